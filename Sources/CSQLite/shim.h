#ifndef PAXOS_CSQLITE_SHIM_H
#define PAXOS_CSQLITE_SHIM_H
/* The system libsqlite3 (Debian: libsqlite3-dev). */
#include <sqlite3.h>
#endif
