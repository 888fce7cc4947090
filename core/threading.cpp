// threading.cpp: the re-exec trick for OMP_WAIT_POLICY and thread-count control.
#include "threading.h"

#include <omp.h>

#include <cstdlib>
#include <cstring>
#include <unistd.h>

namespace bitsmith::core {

void prepareProcessEnvironment(int argc, char **argv)
{
    (void)argc;
    if (!std::getenv("OMP_WAIT_POLICY")) {
        setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
        // Re-execute so libgomp, already initialised at load time, reads the variable.
        execv("/proc/self/exe", argv);
        // If exec fails we carry on; OpenMP may spin but results are unaffected.
    }
    if (const char *t = std::getenv("BITSMITH_THREADS")) {
        const int n = std::atoi(t);
        if (n > 0)
            setThreadCount(n);
    }
}

void setThreadCount(int n)
{
    omp_set_num_threads(n < 1 ? 1 : n);
}

int threadCount()
{
    return omp_get_max_threads();
}

} // namespace bitsmith::core
