namespace app { const char* versionString() { return SIDECAR_VERSION; } }
