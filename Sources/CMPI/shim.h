#ifndef VLSEG_CMPI_SHIM_H
#define VLSEG_CMPI_SHIM_H
#include <mpi.h>

// Open MPI spells these as macros over global objects, which Swift cannot import.
static inline MPI_Comm vlseg_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Comm vlseg_mpi_comm_null(void) { return MPI_COMM_NULL; }
static inline MPI_Datatype vlseg_mpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype vlseg_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype vlseg_mpi_int64(void) { return MPI_INT64_T; }
static inline MPI_Datatype vlseg_mpi_byte(void) { return MPI_BYTE; }
static inline MPI_Op vlseg_mpi_sum(void) { return MPI_SUM; }
static inline MPI_Op vlseg_mpi_max(void) { return MPI_MAX; }
static inline MPI_Op vlseg_mpi_min(void) { return MPI_MIN; }
static inline void *vlseg_mpi_in_place(void) { return MPI_IN_PLACE; }
static inline MPI_Request vlseg_mpi_request_null(void) { return MPI_REQUEST_NULL; }
static inline MPI_Status *vlseg_mpi_status_ignore(void) { return MPI_STATUS_IGNORE; }
static inline int vlseg_mpi_max_library_version_string(void) { return MPI_MAX_LIBRARY_VERSION_STRING; }
static inline int vlseg_mpi_thread_funneled(void) { return MPI_THREAD_FUNNELED; }
static inline int vlseg_mpi_thread_serialized(void) { return MPI_THREAD_SERIALIZED; }
static inline int vlseg_mpi_success(void) { return MPI_SUCCESS; }
static inline int vlseg_mpi_any_source(void) { return MPI_ANY_SOURCE; }
#endif
