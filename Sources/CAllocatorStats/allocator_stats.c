#include "CAllocatorStats.h"
#include <malloc.h>

size_t paxos_allocator_bytes_in_use(void) {
#if defined(__GLIBC__)
    struct mallinfo2 info = mallinfo2();
    /* uordblks: bytes in use in the arenas; hblkhd: bytes in chunks that malloc mmapped directly. */
    return info.uordblks + info.hblkhd;
#else
    return 0;
#endif
}
