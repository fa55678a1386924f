#ifndef VMCTL_BUILD_INFO_H
#define VMCTL_BUILD_INFO_H

/// The git commit the binary was built from (`VMCTL_COMMIT` in the build's environment, set by
/// scripts/build-release), or "unknown".
const char *vmctl_build_commit(void);

#endif
