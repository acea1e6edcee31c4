#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// An exclusive `flock` on `DATA_DIR/LOCK`, held for the life of the process.
///
/// Two processes on one data directory would both open its SQLite file, both lead and each
/// answer from its own memory. The lock is taken before the database is opened and is never
/// released by hand: the kernel drops it when the process exits, however it exits (`kill -9`
/// included), so a stale `LOCK` file never blocks a restart.
struct DataDirectoryLock {
    static let fileName = "LOCK"

    /// The open descriptor that carries the lock; deliberately never closed.
    let descriptor: Int32

    /// Takes the lock, or throws a one-line error naming the process that holds it.
    static func acquire(directory: String) throws(NodeStartupError) -> DataDirectoryLock {
        let path = directory + "/" + fileName
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw NodeStartupError(
                "cannot use data directory \(directory): cannot open \(path): \(errorText())")
        }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            let code = errno
            let holder = readHolder(descriptor)
            close(descriptor)
            if code == EWOULDBLOCK {
                throw NodeStartupError(
                    "data directory \(directory) is in use by another paxos-node process"
                        + (holder.map { " (pid \($0))" } ?? "") + ": \(path) is locked; refusing to start")
            }
            throw NodeStartupError("cannot lock \(path): \(String(cString: strerror(code)))")
        }
        // Record who holds it, for the message a second process prints.
        let pid = Array("\(getpid())\n".utf8)
        if ftruncate(descriptor, 0) == 0 {
            _ = pid.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, 0) }
        }
        return DataDirectoryLock(descriptor: descriptor)
    }

    private static func readHolder(_ descriptor: Int32) -> Int? {
        var buffer = [UInt8](repeating: 0, count: 32)
        let count = buffer.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, $0.count, 0) }
        guard count > 0 else { return nil }
        let text = String(decoding: buffer[..<count], as: UTF8.self)
        return text.split(whereSeparator: \.isWhitespace).first.flatMap { Int($0) }
    }

    private static func errorText() -> String { String(cString: strerror(errno)) }
}
