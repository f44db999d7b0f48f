// Gateway version string lives with the binary.
namespace gateway { const char* versionString() { return SIDECAR_VERSION; } }
