#ifndef C_ALLOCATOR_STATS_H
#define C_ALLOCATOR_STATS_H
#include <stddef.h>

/// Bytes currently allocated through malloc (heap and mmapped chunks), from glibc's mallinfo2.
size_t paxos_allocator_bytes_in_use(void);

#endif
