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
type memWatch struct {
	stop     chan struct{}
	done     sync.WaitGroup
	mu       sync.Mutex
	heapPeak uint64
	rssPeak  uint64 // sampled, for when VmHWM cannot be reset
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
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
				h := heapInUse(s)
				var r uint64
				if !w.hwmReset {
					r = procStatus("VmRSS")
				}
				w.mu.Lock()
				w.heapPeak = max(w.heapPeak, h)
				w.rssPeak = max(w.rssPeak, r)
				w.mu.Unlock()
			}
		}
	}()
	return w
}

// end stops sampling and returns the peaks in bytes.
func (w *memWatch) end() (heap, rss uint64) {
	h := heapInUse(append([]metrics.Sample(nil), heapSamples...))
	close(w.stop)
	w.done.Wait()
	w.heapPeak = max(w.heapPeak, h)
	if w.hwmReset {
		if v := procStatus("VmHWM"); v > 0 {
			return w.heapPeak, v
		}
	}
	return w.heapPeak, max(w.rssPeak, procStatus("VmRSS"))
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
