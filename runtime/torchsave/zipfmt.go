package torchsave

import "encoding/binary"

// Zip structures (APPNOTE.TXT 6.3), as far as torch.save uses them.
const (
	sigLocal       = 0x04034b50
	sigCentral     = 0x02014b50
	sigEOCD        = 0x06054b50
	sigZip64EOCD   = 0x06064b50
	sigZip64Locate = 0x07064b50

	localHeaderLen   = 30
	centralHeaderLen = 46
	eocdLen          = 22
	zip64EOCDLen     = 56
	zip64LocatorLen  = 20

	extraZip64   = 0x0001
	extraPadding = 0x4246 // "FB": torch's alignment padding

	methodStored = 0
	flagUTF8     = 0x0800

	versionZip20 = 20
	versionZip45 = 45 // zip64
	madeByUnix   = 3 << 8

	uint32Max = 0xffffffff
	uint16Max = 0xffff

	// alignment is the offset multiple at which record data starts.
	alignment = 64

	// dosDate is 1980-01-01, the earliest DOS date; the time is 00:00.
	dosDate = 1<<5 | 1
)

// record describes one written zip entry, for the central directory.
type record struct {
	name   string // full name, with the archive folder
	offset int64  // local header offset
	size   int64
	crc    uint32
}

// localHeader returns the local file header of a stored record whose header
// starts at offset off, with a padding extra field that puts the data at a
// multiple of alignment. crc may be patched later at off+14.
func localHeader(name string, off, size int64, crc uint32) []byte {
	zip64, pad := localLayout(name, off, size)
	extraLen := 4 + int(pad)
	if zip64 {
		extraLen += 4 + 16
	}
	b := make([]byte, 0, localHeaderLen+len(name)+extraLen)
	le := binary.LittleEndian
	b = le.AppendUint32(b, sigLocal)
	if zip64 {
		b = le.AppendUint16(b, versionZip45)
	} else {
		b = le.AppendUint16(b, versionZip20)
	}
	b = le.AppendUint16(b, flagUTF8)
	b = le.AppendUint16(b, methodStored)
	b = le.AppendUint16(b, 0) // time
	b = le.AppendUint16(b, dosDate)
	b = le.AppendUint32(b, crc)
	if zip64 {
		b = le.AppendUint32(b, uint32Max)
		b = le.AppendUint32(b, uint32Max)
	} else {
		b = le.AppendUint32(b, uint32(size))
		b = le.AppendUint32(b, uint32(size))
	}
	b = le.AppendUint16(b, uint16(len(name)))
	b = le.AppendUint16(b, uint16(extraLen))
	b = append(b, name...)
	if zip64 {
		b = le.AppendUint16(b, extraZip64)
		b = le.AppendUint16(b, 16)
		b = le.AppendUint64(b, uint64(size)) // uncompressed
		b = le.AppendUint64(b, uint64(size)) // compressed
	}
	b = le.AppendUint16(b, extraPadding)
	b = le.AppendUint16(b, uint16(pad))
	for range pad {
		b = append(b, 'Z')
	}
	return b
}

// localLayout says whether the local header of a record of size bytes
// named name, starting at off, has a zip64 extra field, and how many bytes
// of padding bring its data to the storage alignment.
func localLayout(name string, off, size int64) (zip64 bool, pad int64) {
	zip64 = size >= uint32Max
	start := off + localHeaderLen + int64(len(name)) + 4
	if zip64 {
		start += 4 + 16
	}
	return zip64, (alignment - start%alignment) % alignment
}

// dataOffset returns the offset of the data of a record of size bytes
// named name whose local header starts at off.
func dataOffset(name string, off, size int64) int64 {
	zip64, pad := localLayout(name, off, size)
	start := off + localHeaderLen + int64(len(name)) + 4 + pad
	if zip64 {
		start += 4 + 16
	}
	return start
}

// centralDirectory returns the central directory for recs followed by the
// zip64 end-of-central-directory record, its locator and the classic end
// record; cdOff is the offset at which it is written. Like torch, the zip64
// end records are always present.
func centralDirectory(recs []record, cdOff int64) []byte {
	le := binary.LittleEndian
	var b []byte
	for _, r := range recs {
		var extra []byte
		size32, off32 := uint32(r.size), uint32(r.offset)
		if r.size >= uint32Max {
			size32 = uint32Max
			extra = le.AppendUint64(extra, uint64(r.size))
			extra = le.AppendUint64(extra, uint64(r.size))
		}
		if r.offset >= uint32Max {
			off32 = uint32Max
			extra = le.AppendUint64(extra, uint64(r.offset))
		}
		version := uint16(versionZip20)
		if len(extra) > 0 {
			version = versionZip45
		}
		b = le.AppendUint32(b, sigCentral)
		b = le.AppendUint16(b, madeByUnix|versionZip45)
		b = le.AppendUint16(b, version)
		b = le.AppendUint16(b, flagUTF8)
		b = le.AppendUint16(b, methodStored)
		b = le.AppendUint16(b, 0)
		b = le.AppendUint16(b, dosDate)
		b = le.AppendUint32(b, r.crc)
		b = le.AppendUint32(b, size32)
		b = le.AppendUint32(b, size32)
		b = le.AppendUint16(b, uint16(len(r.name)))
		if len(extra) > 0 {
			b = le.AppendUint16(b, uint16(4+len(extra)))
		} else {
			b = le.AppendUint16(b, 0)
		}
		b = le.AppendUint16(b, 0)            // comment length
		b = le.AppendUint16(b, 0)            // disk number
		b = le.AppendUint16(b, 0)            // internal attributes
		b = le.AppendUint32(b, 0o100644<<16) // external attributes: regular file, rw-r--r--
		b = le.AppendUint32(b, off32)
		b = append(b, r.name...)
		if len(extra) > 0 {
			b = le.AppendUint16(b, extraZip64)
			b = le.AppendUint16(b, uint16(len(extra)))
			b = append(b, extra...)
		}
	}
	cdSize := int64(len(b))
	zip64Off := cdOff + cdSize
	n := uint64(len(recs))

	b = le.AppendUint32(b, sigZip64EOCD)
	b = le.AppendUint64(b, zip64EOCDLen-12)
	b = le.AppendUint16(b, madeByUnix|versionZip45)
	b = le.AppendUint16(b, versionZip45)
	b = le.AppendUint32(b, 0) // this disk
	b = le.AppendUint32(b, 0) // disk with the central directory
	b = le.AppendUint64(b, n)
	b = le.AppendUint64(b, n)
	b = le.AppendUint64(b, uint64(cdSize))
	b = le.AppendUint64(b, uint64(cdOff))

	b = le.AppendUint32(b, sigZip64Locate)
	b = le.AppendUint32(b, 0)
	b = le.AppendUint64(b, uint64(zip64Off))
	b = le.AppendUint32(b, 1) // total disks

	b = le.AppendUint32(b, sigEOCD)
	b = le.AppendUint16(b, 0)
	b = le.AppendUint16(b, 0)
	b = le.AppendUint16(b, uint16(min(n, uint16Max)))
	b = le.AppendUint16(b, uint16(min(n, uint16Max)))
	b = le.AppendUint32(b, uint32(min(uint64(cdSize), uint32Max)))
	b = le.AppendUint32(b, uint32(min(uint64(cdOff), uint32Max)))
	b = le.AppendUint16(b, 0) // comment length
	return b
}
