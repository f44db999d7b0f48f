#include <cstdio>
int main() { std::puts("upstream_app " SIDECAR_VERSION); return 0; }
