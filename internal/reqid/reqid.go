// Package reqid mints the gateway's request ids. A client's own X-Request-Id is never used:
// ids key spend and logs, so only the gateway may choose them.
package reqid

import (
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"time"
)

// New returns a 32-hex-digit id: 48 bits of Unix milliseconds then 80 random bits, so ids sort
// by time like UUIDv7. Ids are not secrets; math/rand/v2's ChaCha8 source is enough.
func New() string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[0:8], uint64(time.Now().UnixMilli())<<16)
	binary.BigEndian.PutUint64(b[6:14], rand.Uint64())
	binary.BigEndian.PutUint16(b[14:16], uint16(rand.Uint32()))
	return hex.EncodeToString(b[:])
}
