package account

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Params are argon2id cost parameters. Memory is in KiB.
type Params struct {
	Memory  uint32
	Time    uint32
	Threads uint8
}

// DefaultParams follow OWASP's argon2id minimum (19 MiB, 2 passes, 1 lane).
var DefaultParams = Params{Memory: 19 * 1024, Time: 2, Threads: 1}

const saltLen, keyLen = 16, 32

// maxMemory bounds the memory cost CheckPassword accepts from a stored hash.
const maxMemory = 1 << 20 // KiB: 1 GiB

// HashPassword returns the PHC string of password under p with a fresh salt.
func HashPassword(password string, p Params) (string, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, keyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Time, p.Threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// CheckPassword reports whether password matches the PHC string; it uses the
// parameters recorded in the hash, so costs can change without a migration.
func CheckPassword(password, hash string) (bool, error) {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false, fmt.Errorf("not an argon2id hash")
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false, fmt.Errorf("argon2 version %q", parts[2])
	}
	var p Params
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Time, &p.Threads); err != nil {
		return false, fmt.Errorf("argon2 params %q: %w", parts[3], err)
	}
	// argon2.IDKey panics on zero passes or lanes; a corrupted memory cost
	// must not let one login take the process's memory.
	if p.Memory > maxMemory {
		return false, fmt.Errorf("argon2 params %q: memory over %d KiB", parts[3], maxMemory)
	}
	if p.Time < 1 || p.Threads < 1 {
		return false, fmt.Errorf("argon2 params %q: time and parallelism must be at least 1", parts[3])
	}
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	if err != nil {
		return false, fmt.Errorf("salt: %w", err)
	}
	want, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil {
		return false, fmt.Errorf("key: %w", err)
	}
	// An empty key would panic in argon2; a very short one would match
	// almost any password. RFC 9106 asks for at least 4 bytes.
	if len(want) < 4 {
		return false, fmt.Errorf("key: %d bytes is too short", len(want))
	}
	got := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}
