import Testing

/// Every suite that runs whole clusters nests here, so they run one at a time: the lab ran its
/// tests serially, timing-sensitive scenarios should not compete for 2 cores, and the memory
/// test reads the whole process's allocator.
@Suite(.serialized) enum ClusterSuites {}
