package secretbox

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Environment variables LoadKeyring reads.
const (
	// EnvMasterKey holds the key material itself.
	EnvMasterKey = "SLUICE_MASTER_KEY"
	// EnvMasterKeyFile names a file holding the key material.
	EnvMasterKeyFile = "SLUICE_MASTER_KEY_FILE"
)

// DefaultKeyID is the id of a key given without one (the bare-base64 form).
const DefaultKeyID = "default"

// ErrNoMasterKey: neither the environment nor a file supplied a master key.
var ErrNoMasterKey = errors.New("secretbox: no master key: set " + EnvMasterKey + " or " + EnvMasterKeyFile)

// ParseKeyring parses key material: either one base64-encoded 32-byte key (its id is
// DefaultKeyID) or a comma-separated list "id:base64,id2:base64" whose first entry is the
// primary. To rotate a bare key, write "new:NEWKEY,default:OLDKEY". Surrounding whitespace
// and newlines are ignored. Errors name entries by position or id, never by content.
func ParseKeyring(material string) (*Keyring, error) {
	material = strings.TrimSpace(material)
	if material == "" {
		return nil, errors.New("secretbox: master key material is empty")
	}
	if !strings.Contains(material, ":") {
		key, err := decodeKey(material)
		if err != nil {
			return nil, fmt.Errorf("secretbox: master key: %w", err)
		}
		defer clear(key)
		return NewKeyring(DefaultKeyID, map[string][]byte{DefaultKeyID: key})
	}
	keys := map[string][]byte{}
	defer func() {
		for _, k := range keys {
			clear(k)
		}
	}()
	var primary string
	var errs []error
	for i, entry := range strings.Split(material, ",") {
		id, b64, ok := strings.Cut(strings.TrimSpace(entry), ":")
		switch {
		case !ok || !keyIDRE.MatchString(id):
			errs = append(errs, fmt.Errorf("secretbox: master key entry %d: want id:base64", i+1))
			continue
		case keys[id] != nil:
			errs = append(errs, fmt.Errorf("secretbox: master key %q given twice", id))
			continue
		}
		key, err := decodeKey(b64)
		if err != nil {
			errs = append(errs, fmt.Errorf("secretbox: master key %q: %w", id, err))
			continue
		}
		keys[id] = key
		if i == 0 {
			primary = id
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return NewKeyring(primary, keys)
}

// decodeKey accepts standard or URL base64, padded or not, of exactly KeySize bytes.
func decodeKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			if len(b) != KeySize {
				clear(b)
				return nil, fmt.Errorf("decodes to %d bytes, want %d", len(b), KeySize)
			}
			return b, nil
		}
	}
	return nil, errors.New("not valid base64")
}

// LoadKeyring reads key material from the environment variable SLUICE_MASTER_KEY or, if
// that is unset, from file (a flag; when empty, SLUICE_MASTER_KEY_FILE names it). Setting
// both the variable and a file is an error, so there is one source of truth.
func LoadKeyring(file string) (*Keyring, error) {
	if file == "" {
		file = os.Getenv(EnvMasterKeyFile)
	}
	env, haveEnv := os.LookupEnv(EnvMasterKey)
	switch {
	case haveEnv && file != "":
		return nil, fmt.Errorf("secretbox: both %s and a key file are set; use one", EnvMasterKey)
	case haveEnv:
		k, err := ParseKeyring(env)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", EnvMasterKey, err)
		}
		return k, nil
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("secretbox: master key file: %w", err)
		}
		defer clear(b)
		k, err := ParseKeyring(string(b))
		if err != nil {
			return nil, fmt.Errorf("master key file %s: %w", file, err)
		}
		return k, nil
	}
	return nil, ErrNoMasterKey
}
