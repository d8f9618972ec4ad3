package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// ScopeKind is the level of the tenancy tree a resource belongs to.
type ScopeKind string

// Scope kinds. VirtualKey is valid only where a resource can be attached to a single key
// (budgets).
const (
	ScopeOrg        ScopeKind = "ORG"
	ScopeTeam       ScopeKind = "TEAM"
	ScopeProject    ScopeKind = "PROJECT"
	ScopePrincipal  ScopeKind = "PRINCIPAL"
	ScopeVirtualKey ScopeKind = "VIRTUAL_KEY"
)

// Scope names one node of the tenancy tree, written KIND:id ("TEAM:eng", "ORG:acme"). In
// JSON it is that string.
type Scope struct {
	Kind ScopeKind
	ID   string
}

// slugRE is the grammar of user-chosen ids (organizations, teams, projects, principals) and
// of scope ids. Generated ids ("vk_01J…") match it too.
var slugRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// ParseScope parses "KIND:id". The kind is case-insensitive; the id is kept as written.
func ParseScope(s string) (Scope, error) {
	kind, id, ok := strings.Cut(s, ":")
	if !ok {
		return Scope{}, fmt.Errorf("scope %q: want KIND:id, e.g. TEAM:eng", s)
	}
	sc := Scope{Kind: ScopeKind(strings.ToUpper(kind)), ID: id}
	if err := sc.Validate(); err != nil {
		return Scope{}, err
	}
	return sc, nil
}

// MustParseScope is ParseScope for literals known to be valid; it panics otherwise.
func MustParseScope(s string) Scope {
	sc, err := ParseScope(s)
	if err != nil {
		panic(err)
	}
	return sc
}

// String returns "KIND:id", or "" for the zero Scope.
func (s Scope) String() string {
	if s.IsZero() {
		return ""
	}
	return string(s.Kind) + ":" + s.ID
}

// IsZero reports whether s is unset.
func (s Scope) IsZero() bool { return s.Kind == "" && s.ID == "" }

// Validate checks the kind and the id grammar. It accepts every kind, VirtualKey included;
// resources that must not be scoped to a key check that themselves.
func (s Scope) Validate() error {
	var errs []error
	switch s.Kind {
	case ScopeOrg, ScopeTeam, ScopeProject, ScopePrincipal:
	case ScopeVirtualKey:
		if !strings.HasPrefix(s.ID, KindVirtualKey.IDPrefix()) {
			errs = append(errs, fmt.Errorf("scope %s: a virtual key id starts with %s", s, KindVirtualKey.IDPrefix()))
		}
	case "":
		errs = append(errs, errors.New("scope: kind is required (ORG, TEAM, PROJECT, PRINCIPAL or VIRTUAL_KEY)"))
	default:
		errs = append(errs, fmt.Errorf("scope %s: unknown kind %q", s, s.Kind))
	}
	if !slugRE.MatchString(s.ID) {
		errs = append(errs, fmt.Errorf("scope %s: id must be 1-128 characters of letters, digits, '.', '_' or '-'", s))
	}
	return errors.Join(errs...)
}

// validateTenantScope checks s and refuses a VIRTUAL_KEY scope, which only budgets accept.
func validateTenantScope(s Scope) error {
	if s.IsZero() {
		return errors.New("scope is required")
	}
	if s.Kind == ScopeVirtualKey {
		return fmt.Errorf("scope %s: VIRTUAL_KEY is not allowed here", s)
	}
	return s.Validate()
}

// MarshalText writes "KIND:id".
func (s Scope) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses "KIND:id"; the empty string is the zero Scope.
func (s *Scope) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*s = Scope{}
		return nil
	}
	sc, err := ParseScope(string(b))
	if err != nil {
		return err
	}
	*s = sc
	return nil
}

var (
	_ json.Marshaler   = Scope{}
	_ json.Unmarshaler = (*Scope)(nil)
)

// MarshalJSON writes the string form.
func (s Scope) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// UnmarshalJSON reads the string form.
func (s *Scope) UnmarshalJSON(b []byte) error {
	var str string
	if err := json.Unmarshal(b, &str); err != nil {
		return fmt.Errorf("scope: want a string like \"TEAM:eng\": %w", err)
	}
	return s.UnmarshalText([]byte(str))
}
