// threading.h: OpenMP / oneDNN thread settings that behave on small hosts.
// The CI and developer machines have 2 vCPUs that act like about one core; spinning OpenMP
// threads there collapse throughput, so OMP_WAIT_POLICY must be PASSIVE. libgomp reads that
// variable once, when it is loaded, so a program sets it by re-executing itself (see below).
#pragma once

namespace bitsmith::core {

// Call first thing in main(). If OMP_WAIT_POLICY is unset, sets it to PASSIVE and re-executes
// the program (argv unchanged) so that the OpenMP runtime sees it; otherwise returns at once.
// Also applies BITSMITH_THREADS (if set) as the default thread count.
void prepareProcessEnvironment(int argc, char **argv);

// Threads used by OpenMP regions and oneDNN primitives (>= 1).
void setThreadCount(int n);
int threadCount();

} // namespace bitsmith::core
