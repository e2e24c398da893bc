// Open MPI's handles and constants are casts of addresses that Swift cannot import;
// each is exposed here as a function.
#ifndef AEDIST_CMPI_SHIM_H
#define AEDIST_CMPI_SHIM_H
#include <mpi.h>

static inline MPI_Comm aedist_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype aedist_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype aedist_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype aedist_int64(void) { return MPI_INT64_T; }
static inline MPI_Datatype aedist_byte(void) { return MPI_BYTE; }
static inline MPI_Op aedist_op_sum(void) { return MPI_SUM; }
static inline MPI_Op aedist_op_max(void) { return MPI_MAX; }
static inline MPI_Op aedist_op_min(void) { return MPI_MIN; }
static inline void *aedist_in_place(void) { return MPI_IN_PLACE; }
static inline MPI_Status *aedist_status_ignore(void) { return MPI_STATUS_IGNORE; }
static inline MPI_Status *aedist_statuses_ignore(void) { return MPI_STATUSES_IGNORE; }
static inline MPI_Request aedist_request_null(void) { return MPI_REQUEST_NULL; }
static inline MPI_Errhandler aedist_errors_return(void) { return MPI_ERRORS_RETURN; }
static inline MPI_Info aedist_info_null(void) { return MPI_INFO_NULL; }
#endif
