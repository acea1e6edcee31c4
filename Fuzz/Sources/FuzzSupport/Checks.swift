/// Stops the run with a message that libFuzzer reports as a crash, saving the input that caused it.
/// A failed property is as much a finding as a trap inside a decoder.
public func require(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError(message()) }
}

/// The bytes libFuzzer hands to `LLVMFuzzerTestOneInput`, copied into an array as the decoders take.
public func fuzzInput(_ start: UnsafeRawPointer?, _ count: Int) -> [UInt8] {
    guard let start, count > 0 else { return [] }
    return Array(UnsafeRawBufferPointer(start: start, count: count))
}
