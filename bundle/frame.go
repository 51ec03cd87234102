package bundle

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// maxCompressed bounds the compressed size of a chunk of u bytes: more than
// a Zstandard encoder needs for incompressible data (a frame header, three
// bytes per 128 KiB block, a checksum).
func maxCompressed(u uint32) uint64 { return uint64(u) + uint64(u)/128 + 64 }

// maxBlockSize is the largest Zstandard block.
const maxBlockSize = 128 << 10

// checkFrame checks that b is exactly one Zstandard frame, without a
// dictionary, whose header declares a content size of size bytes. It reads
// block headers only; it decompresses nothing.
func checkFrame(b []byte, size uint32) error {
	var h zstd.Header
	if err := h.Decode(b); err != nil {
		return fmt.Errorf("zstd frame header: %w: %v", ErrMalformed, err)
	}
	switch {
	case h.Skippable:
		return fmt.Errorf("skippable zstd frame: %w", ErrMalformed)
	case h.DictionaryID != 0:
		return fmt.Errorf("zstd frame needs dictionary %d: %w", h.DictionaryID, ErrMalformed)
	case !h.HasFCS:
		return fmt.Errorf("zstd frame does not declare its size: %w", ErrMalformed)
	case h.FrameContentSize > uint64(size):
		return fmt.Errorf("zstd frame expands to %d bytes, more than the chunk's %d: %w", h.FrameContentSize, size, ErrTooLarge)
	case h.FrameContentSize != uint64(size):
		return fmt.Errorf("zstd frame declares %d bytes, the chunk %d: %w", h.FrameContentSize, size, ErrMalformed)
	}
	// Walk the blocks to find where the frame ends (RFC 8878, 3.1.1.2),
	// adding up the sizes of raw and RLE blocks, which are known without
	// decompressing: a frame of them that expands past the chunk is
	// refused here.
	off := h.HeaderSize
	var known uint64
	for {
		if len(b)-off < 3 {
			return fmt.Errorf("zstd frame ends inside a block header: %w", ErrMalformed)
		}
		bh := uint32(b[off]) | uint32(b[off+1])<<8 | uint32(b[off+2])<<16
		off += 3
		last, typ, n := bh&1 == 1, (bh>>1)&3, int(bh>>3)
		switch typ {
		case 0: // raw
			known += uint64(n)
		case 1: // RLE: one byte, repeated n times
			known += uint64(n)
			n = 1
		case 2: // compressed
			if n > maxBlockSize {
				return fmt.Errorf("zstd block of %d bytes: %w", n, ErrMalformed)
			}
		case 3:
			return fmt.Errorf("reserved zstd block type: %w", ErrMalformed)
		}
		if known > uint64(size) {
			return fmt.Errorf("zstd frame expands past the chunk's %d bytes: %w", size, ErrTooLarge)
		}
		if n > len(b)-off {
			return fmt.Errorf("zstd block runs past the chunk: %w", ErrMalformed)
		}
		off += n
		if last {
			break
		}
	}
	if h.HasCheckSum {
		off += 4
	}
	if off > len(b) {
		return fmt.Errorf("zstd frame's checksum runs past the chunk: %w", ErrMalformed)
	}
	if off != len(b) {
		return fmt.Errorf("chunk holds %d bytes after its zstd frame: %w", len(b)-off, ErrMalformed)
	}
	return nil
}

// decompress decompresses a checked frame into dst, which must have a
// capacity of exactly size bytes: the decoder never writes more.
func decompress(dec *zstd.Decoder, frame, dst []byte, size uint32) ([]byte, error) {
	out, err := dec.DecodeAll(frame, dst[:0])
	switch {
	case errors.Is(err, zstd.ErrWindowSizeExceeded):
		return nil, fmt.Errorf("zstd frame needs a window above %d bytes: %w", MaxChunkSize, ErrTooLarge)
	case errors.Is(err, zstd.ErrDecoderSizeExceeded) || errors.Is(err, zstd.ErrFrameSizeExceeded):
		return nil, fmt.Errorf("zstd frame produces more than the %d bytes it declares: %w", size, ErrMalformed)
	case err != nil:
		return nil, fmt.Errorf("zstd: %w: %v", ErrMalformed, err)
	case len(out) != int(size):
		return nil, fmt.Errorf("zstd frame holds %d bytes, the chunk declares %d: %w", len(out), size, ErrMalformed)
	}
	return out, nil
}

// newDecoder returns a decoder that decodes one frame at a time and never
// more than MaxChunkSize bytes, whatever the frame claims.
func newDecoder() (*zstd.Decoder, error) {
	return zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxMemory(MaxChunkSize),
		zstd.WithDecoderMaxWindow(MaxChunkSize),
		zstd.WithDecodeAllCapLimit(true),
	)
}

// decoders keeps idle decoders between readers: creating one allocates
// tables that can be reused.
var decoders sync.Pool

func getDecoder() (*zstd.Decoder, error) {
	if d, ok := decoders.Get().(*zstd.Decoder); ok {
		return d, nil
	}
	return newDecoder()
}

func putDecoder(d *zstd.Decoder) {
	if d != nil {
		decoders.Put(d)
	}
}

// putChunkHeader writes the three fields of a chunk header.
func putChunkHeader(b []byte, compressed, uncompressed, count uint32) {
	binary.BigEndian.PutUint32(b[0:], compressed)
	binary.BigEndian.PutUint32(b[4:], uncompressed)
	binary.BigEndian.PutUint32(b[8:], count)
}
