import CAllocatorStats

/// Bytes currently allocated with malloc in this process (glibc `mallinfo2`: arena bytes in use
/// plus directly mmapped chunks). Unlike RSS, this drops as soon as memory is freed.
public func allocatorBytesInUse() -> Int {
    Int(paxos_allocator_bytes_in_use())
}
