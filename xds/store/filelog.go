package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/sluice-gateway/sluice/internal/config"
)

// The file store's log: an 8-byte magic, then records framed as
//
//	uint32 little-endian payload length | uint32 little-endian CRC-32C of the payload | payload
//
// where the payload is one JSON-encoded logRecord. A write appends one record and fsyncs;
// open replays the records. A torn final record (cut short, or failing its checksum with
// nothing but zeros after it) is what a crash mid-append leaves: it was never
// acknowledged, so open truncates it away. A bad record followed by data is corruption,
// and open refuses the log rather than silently drop acknowledged writes.

const logMagic = "SLUICEL1"

// maxRecord bounds one record so a corrupt length can't make open allocate gigabytes.
const maxRecord = 64 << 20

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// errCorrupt marks a log that is damaged before its end.
var errCorrupt = errors.New("store: log is corrupt")

// logRecord is one committed write, or (op "rev") the global revision, which compaction
// writes last because deletes leave no document carrying the latest revision.
type logRecord struct {
	Op    string      `json:"op"` // "put", "del" or "rev"
	Rev   int64       `json:"rev"`
	Kind  config.Kind `json:"kind,omitempty"`
	ID    string      `json:"id,omitempty"`
	Value []byte      `json:"value,omitempty"`
	// Set lists index entries (name, key) the document owns after this put; Unset lists
	// entries it gives up.
	Set   [][2]string `json:"set,omitempty"`
	Unset [][2]string `json:"unset,omitempty"`
}

func encodeRecord(r *logRecord) ([]byte, error) {
	payload, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	if len(payload) > maxRecord {
		return nil, fmt.Errorf("store: document too large (%d bytes)", len(payload))
	}
	frame := make([]byte, 8, 8+len(payload))
	binary.LittleEndian.PutUint32(frame[0:4], uint32(len(payload)))
	binary.LittleEndian.PutUint32(frame[4:8], crc32.Checksum(payload, crcTable))
	return append(frame, payload...), nil
}

// decodeLog parses a whole log. It returns the records, the offset just past the last good
// one, and errCorrupt if damage is followed by more data.
func decodeLog(b []byte) (recs []logRecord, good int, err error) {
	if len(b) < len(logMagic) {
		if bytes.Equal(b, []byte(logMagic)[:len(b)]) {
			return nil, 0, nil // crash while creating the log: start over
		}
		return nil, 0, fmt.Errorf("%w: not a sluice store log", errCorrupt)
	}
	if string(b[:len(logMagic)]) != logMagic {
		return nil, 0, fmt.Errorf("%w: not a sluice store log", errCorrupt)
	}
	off := len(logMagic)
	for off < len(b) {
		rest := b[off:]
		if len(rest) < 8 {
			return recs, off, nil // a header cut short by a crash
		}
		n := int(binary.LittleEndian.Uint32(rest[0:4]))
		sum := binary.LittleEndian.Uint32(rest[4:8])
		if n > maxRecord || 8+n > len(rest) {
			if n > maxRecord && !allZero(rest) {
				return recs, off, fmt.Errorf("%w at offset %d: bad record length", errCorrupt, off)
			}
			return recs, off, nil // cut short by a crash
		}
		payload := rest[8 : 8+n]
		var r logRecord
		if crc32.Checksum(payload, crcTable) != sum || json.Unmarshal(payload, &r) != nil || r.Rev <= 0 {
			return recs, off, tornUnlessData(rest[8+n:], off)
		}
		recs = append(recs, r)
		off += 8 + n
	}
	return recs, off, nil
}

// tornUnlessData decides about a bad record at off: if nothing but zeros follows it, it is
// a torn final write; otherwise the log is corrupt.
func tornUnlessData(after []byte, off int) error {
	if allZero(after) {
		return nil
	}
	return fmt.Errorf("%w at offset %d: bad record followed by more data", errCorrupt, off)
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
