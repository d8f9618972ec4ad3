// Package secretbox encrypts secrets at rest (provider credentials) with AES-256-GCM under
// a master key. A Keyring holds one primary key, which seals, and any number of older keys,
// which still open what they sealed, so the master key can be rotated: add the new key as
// primary, Rewrap every stored secret, then drop the old key.
//
// Each Sealed value is bound to caller-chosen associated data (for a provider credential:
// the provider id), so a ciphertext copied onto another record fails to open.
//
// Nothing in this package formats key material or plaintext: errors name key ids only, and
// Keyring and Sealed print as summaries.
package secretbox

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strings"
)

// KeySize is the length of a master key in bytes.
const KeySize = 32

// Errors Open and Rewrap return; test them with errors.Is.
var (
	// ErrUnknownKey: the Sealed value names a key id the keyring does not hold.
	ErrUnknownKey = errors.New("secretbox: sealed with a key this keyring does not hold")
	// ErrOpen: the ciphertext, nonce or associated data do not authenticate.
	ErrOpen = errors.New("secretbox: message authentication failed")
)

var keyIDRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// Keyring is a set of master keys by id. It is immutable and safe for concurrent use.
type Keyring struct {
	primary string
	aeads   map[string]cipher.AEAD
}

// NewKeyring returns a keyring holding keys (id → 32-byte key) that seals under primaryID.
// The key slices are not retained.
func NewKeyring(primaryID string, keys map[string][]byte) (*Keyring, error) {
	var errs []error
	if _, ok := keys[primaryID]; !ok {
		errs = append(errs, fmt.Errorf("secretbox: primary key %q is not among the keys", primaryID))
	}
	k := &Keyring{primary: primaryID, aeads: make(map[string]cipher.AEAD, len(keys))}
	for _, id := range slices.Sorted(maps.Keys(keys)) {
		key := keys[id]
		if !keyIDRE.MatchString(id) {
			errs = append(errs, fmt.Errorf("secretbox: key id %q: want 1-64 letters, digits, '.', '_' or '-'", id))
			continue
		}
		if len(key) != KeySize {
			errs = append(errs, fmt.Errorf("secretbox: key %q is %d bytes, want %d", id, len(key), KeySize))
			continue
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			errs = append(errs, fmt.Errorf("secretbox: key %q: %w", id, err))
			continue
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			errs = append(errs, fmt.Errorf("secretbox: key %q: %w", id, err))
			continue
		}
		k.aeads[id] = aead
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return k, nil
}

// PrimaryID is the id of the key Seal uses.
func (k *Keyring) PrimaryID() string { return k.primary }

// KeyIDs lists the ids of every key held, sorted.
func (k *Keyring) KeyIDs() []string { return slices.Sorted(maps.Keys(k.aeads)) }

// String summarises the keyring by key ids; it never prints key material.
func (k *Keyring) String() string {
	if k == nil {
		return "secretbox.Keyring(nil)"
	}
	return fmt.Sprintf("secretbox.Keyring{primary: %s, keys: %s}", k.primary, strings.Join(k.KeyIDs(), ","))
}

// Format makes every fmt verb (%v, %+v, %#v, %x, …) print String, so a keyring can't be
// dumped by accident.
func (k *Keyring) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, k.String()) }

// Sealed is an encrypted secret. It holds only the key id, nonce and ciphertext (which
// includes the GCM tag); in JSON the byte fields are base64.
type Sealed struct {
	KeyID      string `json:"key_id"`
	Nonce      []byte `json:"nonce"`
	Ciphertext []byte `json:"ciphertext"`
}

// IsZero reports whether s holds nothing (no secret was set).
func (s Sealed) IsZero() bool { return s.KeyID == "" && len(s.Nonce) == 0 && len(s.Ciphertext) == 0 }

// String summarises s without its bytes.
func (s Sealed) String() string {
	if s.IsZero() {
		return "secretbox.Sealed{}"
	}
	return fmt.Sprintf("secretbox.Sealed{key: %s, %d bytes}", s.KeyID, len(s.Ciphertext))
}

// GoString is String, for %#v.
func (s Sealed) GoString() string { return s.String() }

// Validate checks the shape of s (not its authenticity: that needs the key).
func (s Sealed) Validate() error {
	var errs []error
	if !keyIDRE.MatchString(s.KeyID) {
		errs = append(errs, errors.New("secretbox: sealed value has no valid key id"))
	}
	if len(s.Nonce) != 12 {
		errs = append(errs, fmt.Errorf("secretbox: nonce is %d bytes, want 12", len(s.Nonce)))
	}
	if len(s.Ciphertext) < 16 {
		errs = append(errs, errors.New("secretbox: ciphertext is shorter than the GCM tag"))
	}
	return errors.Join(errs...)
}

// Seal encrypts plaintext under the primary key, bound to aad.
func (k *Keyring) Seal(plaintext, aad []byte) (Sealed, error) {
	aead := k.aeads[k.primary]
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return Sealed{}, fmt.Errorf("secretbox: nonce: %w", err)
	}
	return Sealed{KeyID: k.primary, Nonce: nonce, Ciphertext: aead.Seal(nil, nonce, plaintext, aad)}, nil
}

// Open decrypts s, which must have been sealed with the same aad by a key this keyring
// holds. The returned plaintext is a fresh slice the caller owns.
func (k *Keyring) Open(s Sealed, aad []byte) ([]byte, error) {
	aead, ok := k.aeads[s.KeyID]
	if !ok {
		return nil, fmt.Errorf("%w (key id %q)", ErrUnknownKey, s.KeyID)
	}
	if len(s.Nonce) != aead.NonceSize() { // cipher.AEAD.Open panics on a wrong nonce size
		return nil, ErrOpen
	}
	pt, err := aead.Open(nil, s.Nonce, s.Ciphertext, aad)
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}

// Rewrap re-encrypts s under the primary key, keeping aad. A value already sealed under
// the primary key is returned unchanged (compare KeyID to know whether to store the
// result). Rewrap needs aad because opening checks it.
func (k *Keyring) Rewrap(s Sealed, aad []byte) (Sealed, error) {
	if s.KeyID == k.primary {
		return s, nil
	}
	pt, err := k.Open(s, aad)
	if err != nil {
		return Sealed{}, err
	}
	defer clear(pt)
	return k.Seal(pt, aad)
}
