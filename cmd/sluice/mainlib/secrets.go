package mainlib

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/sluice-gateway/sluice/internal/secretbox"
)

// Process secrets. In a fleet each comes from the environment (or a mounted file); on a
// laptop `sluice serve` generates each once into its state directory, readable by the owner
// only, so keys and sealed credentials survive a restart.
const (
	envPepper     = "SLUICE_PEPPER"
	envAdminToken = "SLUICE_ADMIN_TOKEN"
	envCtxKey     = "SLUICE_CTX_KEY" // signs x-sluice-ctx; shared by extproc and the dispatcher
	envFleetToken = "SLUICE_FLEET_TOKEN"
)

// stateSecret returns the secret from env if set, else from the file env_FILE names (a
// mounted Secret), else from dir/name, generating it there when absent. dir == "" disables
// generation.
func stateSecret(env, dir, name string) (string, error) {
	if v := strings.TrimSpace(os.Getenv(env)); v != "" {
		return v, nil
	}
	if path := os.Getenv(env + "_FILE"); path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("%s_FILE: %w", env, err)
		}
		if v := strings.TrimSpace(string(b)); v != "" {
			return v, nil
		}
		return "", fmt.Errorf("%s_FILE: %s is empty", env, path)
	}
	if dir == "" {
		return "", fmt.Errorf("%s is not set", env)
	}
	return fileSecret(filepath.Join(dir, name))
}

// fileSecret reads the secret at path, or writes a fresh one there (32 random bytes, base64,
// mode 0600) when the file does not exist.
func fileSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		if v := strings.TrimSpace(string(b)); v != "" {
			return v, nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	v := base64.StdEncoding.EncodeToString(raw)
	if err := writeFileAtomic(path, []byte(v+"\n"), 0o600); err != nil {
		return "", err
	}
	return v, nil
}

// masterKeyring loads the keyring from SLUICE_MASTER_KEY(_FILE), or else from (or into)
// dir/master.key.
func masterKeyring(dir string) (*secretbox.Keyring, error) {
	if os.Getenv(secretbox.EnvMasterKey) != "" || os.Getenv(secretbox.EnvMasterKeyFile) != "" || dir == "" {
		return secretbox.LoadKeyring("")
	}
	path := filepath.Join(dir, "master.key")
	if _, err := fileSecret(path); err != nil {
		return nil, err
	}
	return secretbox.LoadKeyring(path)
}

// writeFileAtomic writes data to path through a synced temporary file and a rename, so a
// crash leaves the old content or the new, never half of it.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
