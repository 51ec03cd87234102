//go:build linux && (amd64 || arm64)

package bundle

import "syscall"

// dropCache asks the kernel to forget its cached pages of a file that was
// written and synced, so that the next read of it reads the device. Best
// effort: an error only means the read may come from the cache.
func dropCache(fd uintptr) {
	const fadvDontNeed = 4 // POSIX_FADV_DONTNEED on amd64 and arm64
	syscall.Syscall6(syscall.SYS_FADVISE64, fd, 0, 0, fadvDontNeed, 0, 0)
}
