package torchsave

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
)

// Record is one stored entry of the zip archive.
type Record struct {
	Name   string // name inside the archive folder, such as "data/0"
	Offset int64  // offset of the data in the file
	Size   int64
	CRC32  uint32
}

// zipDir is the parsed central directory.
type zipDir struct {
	archive string             // top-level folder
	records []Record           // in central-directory order
	byName  map[string]*Record // by Name
}

var le = binary.LittleEndian

// readZip parses the central directory of the zip in data and locates every
// record's bytes. It fails unless every entry is stored (not compressed),
// unencrypted and inside one top-level folder. fail builds the error
// (record name, message).
func readZip(data []byte, fail func(record string, err error) error) (*zipDir, error) {
	bad := func(format string, args ...any) error { return fail("", fmt.Errorf(format, args...)) }
	size := int64(len(data))
	if size < eocdLen {
		return nil, bad("not a zip file (%d bytes)", size)
	}
	// The end record sits in the last 22+65535 bytes; scan backwards.
	eocd := int64(-1)
	for i := size - eocdLen; i >= 0 && i >= size-eocdLen-uint16Max; i-- {
		if le.Uint32(data[i:]) == sigEOCD && i+eocdLen+int64(le.Uint16(data[i+20:])) <= size {
			eocd = i
			break
		}
	}
	if eocd < 0 {
		return nil, bad("not a zip file: no end of central directory record")
	}
	e := data[eocd:]
	if le.Uint16(e[4:]) != 0 || le.Uint16(e[6:]) != 0 {
		return nil, bad("multi-disk zip archives are not supported")
	}
	count := uint64(le.Uint16(e[10:]))
	cdSize := uint64(le.Uint32(e[12:]))
	cdOff := uint64(le.Uint32(e[16:]))
	cdEnd := uint64(eocd)
	if loc := eocd - zip64LocatorLen; loc >= 0 && le.Uint32(data[loc:]) == sigZip64Locate {
		z := le.Uint64(data[loc+8:])
		if z > uint64(loc) || uint64(loc)-z < zip64EOCDLen {
			return nil, bad("zip64 end of central directory offset %d out of range", z)
		}
		r := data[z:]
		if le.Uint32(r) != sigZip64EOCD {
			return nil, bad("no zip64 end of central directory record at offset %d", z)
		}
		if le.Uint32(r[16:]) != 0 || le.Uint32(r[20:]) != 0 {
			return nil, bad("multi-disk zip archives are not supported")
		}
		count = le.Uint64(r[32:])
		cdSize = le.Uint64(r[40:])
		cdOff = le.Uint64(r[48:])
		cdEnd = z
	} else if count == uint16Max || cdSize == uint32Max || cdOff == uint32Max {
		return nil, bad("zip64 sizes without a zip64 end of central directory locator")
	}
	if cdOff > cdEnd || cdSize > cdEnd-cdOff {
		return nil, bad("central directory (offset %d, %d bytes) out of range", cdOff, cdSize)
	}
	if count > cdSize/centralHeaderLen {
		return nil, bad("central directory claims %d entries in %d bytes", count, cdSize)
	}
	cd := data[cdOff : cdOff+cdSize]
	z := &zipDir{records: make([]Record, 0, count), byName: make(map[string]*Record, count)}
	for n := uint64(0); n < count; n++ {
		if len(cd) < centralHeaderLen || le.Uint32(cd) != sigCentral {
			return nil, bad("central directory entry %d is malformed", n)
		}
		flags := le.Uint16(cd[8:])
		method := le.Uint16(cd[10:])
		crc := le.Uint32(cd[16:])
		csize := uint64(le.Uint32(cd[20:]))
		usize := uint64(le.Uint32(cd[24:]))
		nlen := int(le.Uint16(cd[28:]))
		xlen := int(le.Uint16(cd[30:]))
		clen := int(le.Uint16(cd[32:]))
		off := uint64(le.Uint32(cd[42:]))
		if len(cd) < centralHeaderLen+nlen+xlen+clen {
			return nil, bad("central directory entry %d is truncated", n)
		}
		name := string(cd[centralHeaderLen : centralHeaderLen+nlen])
		extra := cd[centralHeaderLen+nlen : centralHeaderLen+nlen+xlen]
		cd = cd[centralHeaderLen+nlen+xlen+clen:]
		// zip64 extra: the 64-bit values of the fields that hold 0xffffffff.
		for len(extra) >= 4 {
			id, l := le.Uint16(extra), int(le.Uint16(extra[2:]))
			if len(extra) < 4+l {
				return nil, fail(name, errors.New("truncated extra field in the central directory"))
			}
			f := extra[4 : 4+l]
			extra = extra[4+l:]
			if id != extraZip64 {
				continue
			}
			for _, p := range []*uint64{&usize, &csize, &off} {
				if *p != uint32Max {
					continue
				}
				if len(f) < 8 {
					return nil, fail(name, errors.New("zip64 extra field too short"))
				}
				*p = le.Uint64(f)
				f = f[8:]
			}
		}
		var prefix, rest string
		if i := strings.IndexByte(name, '/'); i > 0 {
			prefix, rest = name[:i], name[i+1:]
		} else {
			return nil, fail(name, errors.New("record is not inside a folder"))
		}
		if n == 0 {
			z.archive = prefix
		} else if prefix != z.archive {
			return nil, fail(name, fmt.Errorf("record is outside the archive folder %q", z.archive))
		}
		if flags&1 != 0 {
			return nil, fail(rest, errors.New("record is encrypted"))
		}
		if method != methodStored {
			return nil, fail(rest, fmt.Errorf("record is compressed (method %d); torch.save stores records uncompressed", method))
		}
		if csize != usize {
			return nil, fail(rest, fmt.Errorf("stored record has compressed size %d != size %d", csize, usize))
		}
		if off > uint64(size)-localHeaderLen || uint64(size) < localHeaderLen {
			return nil, fail(rest, fmt.Errorf("local header offset %d out of range", off))
		}
		lh := data[off:]
		if le.Uint32(lh) != sigLocal {
			return nil, fail(rest, fmt.Errorf("no local header at offset %d", off))
		}
		dataOff := off + localHeaderLen + uint64(le.Uint16(lh[26:])) + uint64(le.Uint16(lh[28:]))
		if lnlen := int(le.Uint16(lh[26:])); lnlen != nlen || off+localHeaderLen+uint64(nlen) > uint64(size) ||
			string(data[off+localHeaderLen:off+localHeaderLen+uint64(nlen)]) != name {
			return nil, fail(rest, errors.New("local header name differs from the central directory"))
		}
		if dataOff > uint64(size) || usize > uint64(size)-dataOff {
			return nil, fail(rest, fmt.Errorf("data (offset %d, %d bytes) extends past the end of the file (%d bytes)", dataOff, usize, size))
		}
		if _, dup := z.byName[rest]; dup {
			return nil, fail(rest, errors.New("duplicate record"))
		}
		z.records = append(z.records, Record{Name: rest, Offset: int64(dataOff), Size: int64(usize), CRC32: crc})
		z.byName[rest] = nil
	}
	for i := range z.records {
		z.byName[z.records[i].Name] = &z.records[i]
	}
	return z, nil
}

// bytes returns the data of r within the file data.
func (r *Record) bytes(data []byte) []byte {
	return data[r.Offset : r.Offset+r.Size : r.Offset+r.Size]
}

// checkCRC verifies the CRC-32 of r.
func (r *Record) checkCRC(data []byte) error {
	if got := crc32.ChecksumIEEE(r.bytes(data)); got != r.CRC32 {
		return fmt.Errorf("CRC-32 mismatch: computed %08x, stored %08x", got, r.CRC32)
	}
	return nil
}
