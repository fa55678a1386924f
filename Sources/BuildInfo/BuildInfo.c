#include "BuildInfo.h"

// VMCTL_COMMIT is defined by Package.swift from the environment: a C string is the one kind of
// build-time value SwiftPM can hand to a target without a plugin.
const char *vmctl_build_commit(void) { return VMCTL_COMMIT; }
