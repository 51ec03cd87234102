//go:build !(linux && (amd64 || arm64))

package bundle

// dropCache does nothing here: reading a file back after writing it may
// read the system's cache rather than the device.
func dropCache(fd uintptr) {}
