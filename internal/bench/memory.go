package bench

import (
	"bufio"
	"bytes"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"sync"
	"time"
)

// memWatch measures the peak memory of one stage in two ways:
//
//   - the Go heap in use (live and unswept objects plus fragmentation, as
//     MemStats.HeapInuse), sampled every few milliseconds;
//   - the process's resident set: the kernel's high-water mark (VmHWM),
//     reset at the start of the stage through /proc/self/clear_refs, so
//     that it covers this stage only. It includes SQLite's page caches and
//     everything outside the Go heap. Where it cannot be reset, the
//     resident set (VmRSS) is sampled instead.
//
// It also samples the resident set less the pages of files mapped into
// memory (RssAnon and RssShmem): the memory the process holds of its own,
// without the pages of the binary and of a database file SQLite reads
// through a memory map, which are the kernel's page cache of those files.
type memWatch struct {
	stop     chan struct{}
	done     sync.WaitGroup
	mu       sync.Mutex
	heapPeak uint64
	rssPeak  uint64 // sampled, for when VmHWM cannot be reset
	anonPeak uint64 // RssAnon + RssShmem, sampled
	hwmReset bool
}

var heapSamples = []metrics.Sample{
	{Name: "/memory/classes/heap/objects:bytes"},
	{Name: "/memory/classes/heap/unused:bytes"},
}

func heapInUse(s []metrics.Sample) uint64 {
	metrics.Read(s)
	var n uint64
	for _, x := range s {
		if x.Value.Kind() == metrics.KindUint64 {
			n += x.Value.Uint64()
		}
	}
	return n
}

// startMem returns memory to the system (so that what earlier stages left
// does not count), resets the high-water mark and starts sampling.
func startMem() *memWatch {
	runtime.GC()
	debug.FreeOSMemory()
	w := &memWatch{stop: make(chan struct{})}
	w.hwmReset = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
	s := append([]metrics.Sample(nil), heapSamples...)
	w.heapPeak = heapInUse(s)
	w.rssPeak = procStatus("VmRSS")
	w.done.Add(1)
	go func() {
		defer w.done.Done()
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for tick := 0; ; tick++ {
			select {
			case <-w.stop:
				return
			case <-t.C:
				h := heapInUse(s)
				var r, a uint64
				if !w.hwmReset {
					r = procStatus("VmRSS")
				}
				if tick%5 == 0 {
					a = anonRSS()
				}
				w.mu.Lock()
				w.heapPeak = max(w.heapPeak, h)
				w.rssPeak = max(w.rssPeak, r)
				w.anonPeak = max(w.anonPeak, a)
				w.mu.Unlock()
			}
		}
	}()
	return w
}

// end stops sampling and returns the peaks in bytes.
func (w *memWatch) end() (heap, rss, anon uint64) {
	h := heapInUse(append([]metrics.Sample(nil), heapSamples...))
	a := anonRSS()
	close(w.stop)
	w.done.Wait()
	w.heapPeak = max(w.heapPeak, h)
	w.anonPeak = max(w.anonPeak, a)
	if w.hwmReset {
		if v := procStatus("VmHWM"); v > 0 {
			return w.heapPeak, v, w.anonPeak
		}
	}
	return w.heapPeak, max(w.rssPeak, procStatus("VmRSS")), w.anonPeak
}

// anonRSS returns the resident memory not backed by a file, 0 if unknown.
func anonRSS() uint64 {
	return procStatus("RssAnon") + procStatus("RssShmem")
}

// procStatus returns a "kB" field of /proc/self/status in bytes, 0 if
// unknown.
func procStatus(field string) uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.HasPrefix(line, []byte(field+":")) {
			continue
		}
		f := bytes.Fields(line[len(field)+1:])
		if len(f) == 0 {
			return 0
		}
		v, err := strconv.ParseUint(string(f[0]), 10, 64)
		if err != nil {
			return 0
		}
		return v << 10
	}
	return 0
}
