package guardrail

import (
	"context"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/vkey"
)

// mustNew compiles a guardrail named id; edit fills in the rest.
func mustNew(t testing.TB, id string, kind config.GuardrailKind, edit func(*config.Guardrail)) *Guardrail {
	t.Helper()
	c := &config.Guardrail{ID: id, Name: id, Kind: kind,
		Directions: []config.GuardrailDirection{config.DirectionRequest, config.DirectionResponse, config.DirectionStream}}
	if edit != nil {
		edit(c)
	}
	g, err := New(c, Options{})
	if err != nil {
		t.Fatalf("New(%s): %v", id, err)
	}
	return g
}

// redactor returns a redacting guardrail of kind for the given entities.
func redactor(t testing.TB, kind config.GuardrailKind, entities ...string) *Guardrail {
	return mustNew(t, "redact-"+string(kind), kind, func(c *config.Guardrail) {
		c.Action = config.ActionRedact
		c.Entities = entities
	})
}

// redact runs g over one text with Check.
func redact(t testing.TB, g *Guardrail, s string) string {
	t.Helper()
	v := Check(context.Background(), []*Guardrail{g}, config.DirectionRequest, Meta{}, []string{s})
	switch v.Action {
	case Allow:
		return s
	case Modify:
		return v.Texts[0]
	}
	t.Fatalf("unexpected block: %+v", v)
	return ""
}

var (
	jwtSample       = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
	anthropicSample = "sk-ant-api03-" + strings.Repeat("Ab3dE", 18) + "xyzAA"
	openAISample    = "sk-proj-" + strings.Repeat("a1B2c3D4", 8)
	githubSample    = "ghp_" + strings.Repeat("aB3d", 9)
	googleSample    = "AIza" + "SyDdI0hCZtE6vySjMm-WEfRq3CPzqKqqsHI"
	slackSample     = "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
	pemSample       = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgHcTz6sE2I2yPB\naNcT9j6QpA0H9mLlxvT8JQZ8Fq2Y7RNsNHKbWmDZ5x0=\n-----END RSA PRIVATE KEY-----"
)

func TestEntities(t *testing.T) {
	sluiceKey, err := vkey.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, entity string
		in, want     string
	}{
		{"email", "email", "mail alice@example.com now", "mail [REDACTED:EMAIL] now"},
		{"email/subdomains", "email", "<a.b+tag@mail.example.co.uk>.", "<[REDACTED:EMAIL]>."},
		{"email/two", "email", "a@b.io,c_d@e-f.org", "[REDACTED:EMAIL],[REDACTED:EMAIL]"},
		{"email/no tld", "email", "root@localhost and user@host", ""},
		{"email/version", "email", "npm i pkg@1.2.3 or @scope/pkg@2.0.0", ""},
		{"email/mention", "email", "thanks @alice and @bob.", ""},
		{"email/trailing dots", "email", "x.@example.com", ""},

		{"phone/intl", "phone", "call +1 415 555 2671 now", "call [REDACTED:PHONE] now"},
		{"phone/intl uk", "phone", "+44 20 7946 0958", "[REDACTED:PHONE]"},
		{"phone/e164", "phone", "tel:+14155552671", "tel:[REDACTED:PHONE]"},
		{"phone/intl paren", "phone", "+49 (0)30 123456", "[REDACTED:PHONE]"},
		{"phone/fr", "phone", "+33 1 23 45 67 89 ou 01 23 45 67 89", "[REDACTED:PHONE] ou [REDACTED:PHONE]"},
		{"phone/nanp paren", "phone", "(415) 555-2671", "[REDACTED:PHONE]"},
		{"phone/nanp dashes", "phone", "Call 415-555-2671.", "Call [REDACTED:PHONE]."},
		{"phone/nanp dots", "phone", "415.555.2671", "[REDACTED:PHONE]"},
		{"phone/nanp one", "phone", "1-415-555-2671", "[REDACTED:PHONE]"},
		{"phone/uk national", "phone", "ring 020 7946 0958", "ring [REDACTED:PHONE]"},
		{"phone/date", "phone", "on 2024-01-15 at 12:30:45, or 01.02.2024", ""},
		{"phone/date spaced", "phone", "01 02 2024", ""},
		{"phone/card", "phone", "4111 1111 1111 1111 and 4111111111111111", ""},
		{"phone/plain number", "phone", "id 4155552671 and 1234567890123", ""},
		{"phone/bad area", "phone", "123-456-7890", ""},
		{"phone/mixed seps", "phone", "415-555.2671", ""},
		{"phone/address", "phone", "010.001.002.003", ""},
		{"phone/decimal", "phone", "pi is 3.14159265358979", ""},
		{"phone/longer run", "phone", "415-555-2671-99", ""},

		{"card/spaced", "credit_card", "card 4111 1111 1111 1111 exp", "card [REDACTED:CREDIT_CARD] exp"},
		{"card/dashed", "credit_card", "4111-1111-1111-1111", "[REDACTED:CREDIT_CARD]"},
		{"card/plain", "credit_card", "5555555555554444.", "[REDACTED:CREDIT_CARD]."},
		{"card/amex", "credit_card", "378282246310005 and 3782 822463 10005", "[REDACTED:CREDIT_CARD] and [REDACTED:CREDIT_CARD]"},
		{"card/mastercard 2", "credit_card", "2223003122003222", "[REDACTED:CREDIT_CARD]"},
		{"card/discover 19", "credit_card", "6011 0009 9013 9424 3", ""},
		{"card/luhn", "credit_card", "4111 1111 1111 1112", ""},
		{"card/network", "credit_card", "1234567812345670 and 9999999999999995", ""},
		{"card/too long", "credit_card", "41111111111111111111", ""},
		{"card/decimal", "credit_card", "4111111111111111.5", ""},
		{"card/years", "credit_card", "2020 2021 2022 2023", ""},
		{"card/in word", "credit_card", "x4111111111111111", ""},
		{"card/mixed seps", "credit_card", "4111-1111 1111-1111", ""},

		{"iban/spaced", "iban", "IBAN DE89 3704 0044 0532 0130 00.", "IBAN [REDACTED:IBAN]."},
		{"iban/compact", "iban", "DE89370400440532013000", "[REDACTED:IBAN]"},
		{"iban/letters", "iban", "GB82 WEST 1234 5698 7654 32 and GB82WEST12345698765432", "[REDACTED:IBAN] and [REDACTED:IBAN]"},
		{"iban/fr", "iban", "FR14 2004 1010 0505 0001 3M02 606", "[REDACTED:IBAN]"},
		{"iban/no", "iban", "NO9386011117947", "[REDACTED:IBAN]"},
		{"iban/check", "iban", "DE89 3704 0044 0532 0130 01", ""},
		{"iban/country", "iban", "XX89370400440532013000", ""},
		{"iban/length", "iban", "DE8937040044053201300", ""},
		{"iban/longer", "iban", "DE89370400440532013000X", ""},

		{"ssn/dashes", "us_ssn", "SSN 123-45-6789.", "SSN [REDACTED:US_SSN]."},
		{"ssn/spaces", "us_ssn", "ssn: 078 05 1120", "ssn: [REDACTED:US_SSN]"},
		{"ssn/invalid", "us_ssn", "000-12-3456 666-12-3456 900-12-3456 123-00-4567 123-45-0000", ""},
		{"ssn/longer", "us_ssn", "123-45-67890 1-123-45-6789 123-45-6789-1 12 123 45 6789", ""},
		{"ssn/mixed", "us_ssn", "123-45 6789", ""},

		{"ip/v4", "ip_address", "host 10.0.0.1 and 192.168.1.254.", "host [REDACTED:IP_ADDRESS] and [REDACTED:IP_ADDRESS]."},
		{"ip/v6", "ip_address", "at 2001:db8::8a2e:370:7334 or [fe80::1]:80", "at [REDACTED:IP_ADDRESS] or [[REDACTED:IP_ADDRESS]]:80"},
		{"ip/v6 full", "ip_address", "2001:0db8:0000:0000:0000:ff00:0042:8329", "[REDACTED:IP_ADDRESS]"},
		{"ip/mapped", "ip_address", "::ffff:192.0.2.1", "[REDACTED:IP_ADDRESS]"},
		{"ip/port and range", "ip_address", "127.0.0.1:8080, 10.0.0.1-10.0.0.9", "[REDACTED:IP_ADDRESS]:8080, [REDACTED:IP_ADDRESS]-[REDACTED:IP_ADDRESS]"},
		{"ip/v4 invalid", "ip_address", "256.1.1.1 1.2.3 1.2.3.4.5 01.02.03.04 v1.2.3.4", ""},
		{"ip/not v6", "ip_address", "12:30:45 std::vector 00:1a:2b:3c:4d:5e Note: a::b::c", ""},

		{"openai", "openai_key", "key=" + openAISample + "\n", "key=[REDACTED:OPENAI_KEY]\n"},
		{"openai/legacy", "openai_key", "sk-abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789ab", "[REDACTED:OPENAI_KEY]"},
		{"openai/not others", "openai_key", anthropicSample + " " + sluiceKey, ""},
		{"openai/prose", "openai_key", "sk-learn, task-abc123def456ghi789jkl012, sk-this-is-not-a-real-key-ok", ""},
		{"anthropic", "anthropic_key", `"` + anthropicSample + `"`, `"[REDACTED:ANTHROPIC_KEY]"`},
		{"aws", "aws_access_key", "AKIAIOSFODNN7EXAMPLE ASIAY34FZKBOKMUTVV7A", "[REDACTED:AWS_ACCESS_KEY] [REDACTED:AWS_ACCESS_KEY]"},
		{"aws/length", "aws_access_key", "AKIAIOSFODNN7EXAMPL AKIAIOSFODNN7EXAMPLEX xAKIAIOSFODNN7EXAMPLE", ""},
		{"github", "github_token", githubSample + " gho_" + strings.Repeat("z9", 18), "[REDACTED:GITHUB_TOKEN] [REDACTED:GITHUB_TOKEN]"},
		{"github/pat", "github_token", "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUV", "[REDACTED:GITHUB_TOKEN]"},
		{"github/short", "github_token", "ghp_abc high_ghx_" + strings.Repeat("a", 36), ""},
		{"google", "google_api_key", "key: " + googleSample, "key: [REDACTED:GOOGLE_API_KEY]"},
		{"slack", "slack_token", slackSample, "[REDACTED:SLACK_TOKEN]"},
		{"slack/prose", "slack_token", "xoxb-not-a-token-here", ""},
		{"pem", "private_key", "key:\n" + pemSample + "\nend", "key:\n[REDACTED:PRIVATE_KEY]\nend"},
		{"pem/unterminated", "private_key", "key:\n" + pemSample[:80], "key:\n[REDACTED:PRIVATE_KEY]"},
		{"pem/public", "private_key", "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----", ""},
		{"jwt", "jwt", "Bearer " + jwtSample + ".", "Bearer [REDACTED:JWT]."},
		{"jwt/two segments", "jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0", ""},
		{"sluice", "sluice_key", "use " + sluiceKey + " here", "use [REDACTED:SLUICE_KEY] here"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kind := config.GuardrailPII
			for _, e := range config.SecretEntities {
				if e == tc.entity {
					kind = config.GuardrailSecrets
				}
			}
			want := tc.want
			if want == "" {
				want = tc.in
			}
			if got := redact(t, redactor(t, kind, tc.entity), tc.in); got != want {
				t.Errorf("redact(%q)\n got %q\nwant %q", tc.in, got, want)
			}
		})
	}
}

func TestAllEntitiesByDefault(t *testing.T) {
	pii := redactor(t, config.GuardrailPII)
	in := "alice@example.com +1 415 555 2671 4111111111111111 DE89370400440532013000 123-45-6789 10.0.0.1"
	want := "[REDACTED:EMAIL] [REDACTED:PHONE] [REDACTED:CREDIT_CARD] [REDACTED:IBAN] [REDACTED:US_SSN] [REDACTED:IP_ADDRESS]"
	if got := redact(t, pii, in); got != want {
		t.Errorf("pii:\n got %q\nwant %q", got, want)
	}
	sec := redactor(t, config.GuardrailSecrets)
	in = strings.Join([]string{openAISample, anthropicSample, "AKIAIOSFODNN7EXAMPLE", githubSample, googleSample, slackSample, pemSample, jwtSample}, " ")
	want = "[REDACTED:OPENAI_KEY] [REDACTED:ANTHROPIC_KEY] [REDACTED:AWS_ACCESS_KEY] [REDACTED:GITHUB_TOKEN] [REDACTED:GOOGLE_API_KEY] [REDACTED:SLACK_TOKEN] [REDACTED:PRIVATE_KEY] [REDACTED:JWT]"
	if got := redact(t, sec, in); got != want {
		t.Errorf("secrets:\n got %q\nwant %q", got, want)
	}
}

func TestRegexMerge(t *testing.T) {
	g := mustNew(t, "words", config.GuardrailRegex, func(c *config.Guardrail) {
		c.Action = config.ActionRedact
		c.Patterns = []config.GuardrailPattern{
			{Name: "abc", Pattern: `abc`}, {Name: "bcde", Pattern: `bcde`},
			{Name: "xy", Pattern: `xy`}, {Name: "xyzw", Pattern: `xyzw`},
			{Name: "empty", Pattern: `q*`}, {Name: "ticket", Pattern: `(?i)TICKET-\d+`},
		}
	})
	tests := []struct{ in, want string }{
		{"-abcde-", "-[REDACTED:ABC]-"},            // overlap: merged, leftmost wins
		{"-xyzw-", "-[REDACTED:XYZW]-"},            // same start: longest wins
		{"abcabc", "[REDACTED:ABC][REDACTED:ABC]"}, // adjacent: two
		{"see ticket-42 and TICKET-7", "see [REDACTED:TICKET] and [REDACTED:TICKET]"},
		{"nothing here", "nothing here"},
	}
	for _, tc := range tests {
		if got := redact(t, g, tc.in); got != tc.want {
			t.Errorf("redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestCheckCombined covers detectors that find overlapping things: one scan of the
// original text, blocking over redacting, and one placeholder per overlapping group.
func TestCheckCombined(t *testing.T) {
	pii := redactor(t, config.GuardrailPII, "email")
	regex := func(id string, action config.GuardrailAction, name, pattern string) *Guardrail {
		return mustNew(t, id, config.GuardrailRegex, func(c *config.Guardrail) {
			c.Action = action
			c.Patterns = []config.GuardrailPattern{{Name: name, Pattern: pattern}}
		})
	}
	domain := regex("domain", config.ActionRedact, "DOMAIN", `example\.com`)
	user := regex("user", config.ActionRedact, "USER", `alice@example`)
	addr := regex("addr", config.ActionRedact, "ADDR", `alice@example\.com`)
	mailTo := regex("mailto", config.ActionRedact, "MAILTO", `mail alice`)
	blockDomain := regex("block-domain", config.ActionBlock, "DOMAIN", `example\.com`)
	blockMail := regex("block-mail", config.ActionBlock, "MAIL", `mail`)
	const text = "mail alice@example.com now"
	tests := []struct {
		name  string
		gs    []*Guardrail
		want  string // the redacted text, or the id of the guardrail that blocks
		block bool
	}{
		{"later starts inside", []*Guardrail{domain, pii}, "mail [REDACTED:EMAIL] now", false},
		{"shorter at same start", []*Guardrail{user, pii}, "mail [REDACTED:EMAIL] now", false},
		{"same span, pii first", []*Guardrail{pii, addr}, "mail [REDACTED:EMAIL] now", false},
		{"same span, regex first", []*Guardrail{addr, pii}, "mail [REDACTED:ADDR] now", false},
		{"leftmost wins, span grows", []*Guardrail{pii, mailTo}, "[REDACTED:MAILTO] now", false},
		{"block inside a redaction", []*Guardrail{pii, blockDomain}, "block-domain", true},
		{"first blocking guardrail", []*Guardrail{pii, blockDomain, blockMail}, "block-domain", true},
		{"first blocking guardrail, reordered", []*Guardrail{blockMail, blockDomain, pii}, "block-mail", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := Check(context.Background(), tc.gs, config.DirectionStream, Meta{}, []string{"hello", text})
			if tc.block {
				if v.Action != Block || v.Guardrail != tc.want {
					t.Fatalf("Check = %+v, want a block by %s", v, tc.want)
				}
			} else if v.Action != Modify || v.Texts[0] != "hello" || v.Texts[1] != tc.want {
				t.Fatalf("Check = %+v, want %q", v, tc.want)
			}
			// A stream of the text agrees, however it is cut.
			want, _ := checkAll(tc.gs, text)
			for p := 1; p < len(text); p++ {
				rel, blocked := streamAll(t, tc.gs, text[:p], text[p:])
				if got := strings.Join(rel, ""); blocked != tc.block || !blocked && got != want {
					t.Fatalf("split at %d: %q, blocked %v", p, got, blocked)
				}
			}
		})
	}
	// Among texts, the first blocking guardrail in order names the block, wherever it
	// finds something.
	v := Check(context.Background(), []*Guardrail{blockDomain, blockMail}, config.DirectionRequest, Meta{},
		[]string{"mail", "x", "see example.com"})
	if v.Action != Block || v.Guardrail != "block-domain" || v.Reason != `guardrail "block-domain" found a DOMAIN` {
		t.Errorf("Check = %+v", v)
	}
}

func TestCountDigits(t *testing.T) {
	for _, s := range []string{"", "a1b2c3", strings.Repeat("x9/:", 100) + "é5\xff\xb9", "0123456789abcdef"} {
		want, next := 0, len(s)
		for i := 0; i < len(s); i++ {
			if s[i] >= '0' && s[i] <= '9' {
				want++
				next = min(next, i)
			}
		}
		if got := countDigits(s); got != want {
			t.Errorf("countDigits(%q) = %d, want %d", s, got, want)
		}
		if got := nextDigit(s, 0); got != next {
			t.Errorf("nextDigit(%q) = %d, want %d", s, got, next)
		}
	}
}
