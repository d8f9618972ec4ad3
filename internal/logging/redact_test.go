package logging

import (
	"encoding/json"
	"strings"
	"testing"
)

// Canary secrets: realistic shapes, never real credentials.
const (
	sluiceKey   = "sk-sluice-4fJ9kQ2mXvB7nR1tY8wZ3cL6pD0sH5gA1b2C3d"
	openAIKey   = "sk-aB3dE5fG7hJ9kL1mN3pQ5rS7T3BlbkFJtV9wX1yZ3aB5cD7eF9gH"
	openAIProj  = "sk-proj-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe_d-cBa9876543210zyXWvuTSrq"
	openAISvc   = "sk-svcacct-Qw3Er5Ty7Ui9Op1As3Df5Gh7Jk9Lz1Xc3Vb5Nm7Qw9Er1Ty3"
	anthropic   = "sk-ant-api03-Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8Qr9St0Uv1Wx2Yz3Ab4Cd5Ef6Gh7Ij8Kl9Mn0Op1Qr2St3Uv4Wx5Yz6Ab7Cd8Ef9Gh0-Ij1KlAA"
	bearerTok   = "c2VjcmV0LWJlYXJlci10b2tlbi0xMjM0NTY3ODk"
	basicCred   = "dXNlcjpodW50ZXIy" // user:hunter2
	awsKeyID    = "AKIAIOSFODNN7EXAMPLE"
	awsSTSKeyID = "ASIAY34FZKBOKMUTVV7A"
	githubPAT   = "ghp_R8bK2mQ9xV4nL7tY1wZ5cJ3pD6sH0gA2fE8u"
	githubFine  = "github_pat_11ABCDEFG0123456789abcd_efghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ012345678"
	googleKey   = "AIzaSyD4x8Kq2Lm9Nv5Bc7Xz1Wp3Rt6Yh0Jf8Gs"
	slackTok    = "xoxb-2048163095-4096327185-Rk9Tz2Xv6Qm1Lp8Wn3Jh5Bc"
	jwtTok      = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
	pemKey      = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\nVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n-----END RSA PRIVATE KEY-----"
)

func TestRedact(t *testing.T) {
	for _, c := range []struct {
		name, in, want string
	}{
		// Each secret shape.
		{"sluice key", "key " + sluiceKey + " refused", "key sk-sluice-[REDACTED] refused"},
		{"openai legacy key", openAIKey, "sk-[REDACTED]"},
		{"openai project key", "(" + openAIProj + ")", "(sk-proj-[REDACTED])"},
		{"openai service account key", openAISvc, "sk-svcacct-[REDACTED]"},
		{"anthropic key", anthropic, "sk-ant-[REDACTED]"},
		{"bearer", "Authorization header was Bearer " + bearerTok, "Authorization header was Bearer [REDACTED]"},
		{"bearer lower case", "bearer " + bearerTok, "bearer [REDACTED]"},
		{"basic", "sent Basic " + basicCred + " upstream", "sent Basic [REDACTED] upstream"},
		{"aws access key id", "id=" + awsKeyID + ".", "id=AKIA[REDACTED]."},
		{"aws sts key id", awsSTSKeyID, "ASIA[REDACTED]"},
		{"github classic", githubPAT, "ghp_[REDACTED]"},
		{"github fine-grained", githubFine, "github_pat_[REDACTED]"},
		{"google api key", googleKey, "AIza[REDACTED]"},
		{"slack", slackTok, "xoxb-[REDACTED]"},
		{"jwt", "got " + jwtTok + " back", "got [REDACTED] back"},
		{"pem private key", "loaded " + pemKey + " ok",
			"loaded -----BEGIN RSA PRIVATE KEY-----[REDACTED]-----END RSA PRIVATE KEY----- ok"},
		{"pem cut short", "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
			"-----BEGIN PRIVATE KEY-----[REDACTED]"},

		// Secret key names.
		{"password=", "login password=hunter2 user=bob", "login password=[REDACTED] user=bob"},
		{"api_key=", "api_key=abc123&model=x", "api_key=[REDACTED]&model=x"},
		{"apikey upper", "APIKEY=abc123", "APIKEY=[REDACTED]"},
		{"spaces around =", "secret = s3cr3t", "secret = [REDACTED]"},
		{"client_secret", "client_secret=abc", "client_secret=[REDACTED]"},
		{"refresh_token", "refresh_token=r-123;", "refresh_token=[REDACTED];"},
		{"camelCase", "accessToken=tok123 clientSecret=cs456", "accessToken=[REDACTED] clientSecret=[REDACTED]"},
		{"header x-api-key", "X-Api-Key: abc123def", "X-Api-Key: [REDACTED]"},
		{"header authorization keeps the whole value", "Authorization: Custom a=1, b=2\nnext",
			"Authorization: [REDACTED]\nnext"},
		{"authorization inside marshalled JSON", `{"h":"Authorization: Custom a\"b"}`, `{"h":"Authorization: [REDACTED]\"b"}`},
		{"scheme after a key name", "token=Bearer abc123, next", "token=[REDACTED], next"},
		{"pem after a key name", "private_key=" + pemKey, "private_key=[REDACTED]-----END RSA PRIVATE KEY-----"},
		{"go map of headers", "map[Authorization:[Token abc123] X-Api-Key:[k-456]]",
			"map[Authorization:[[REDACTED]] X-Api-Key:[[REDACTED]]]"},
		{"json", `{"api_key":"abc123","model":"gpt-4o"}`, `{"api_key":"[REDACTED]","model":"gpt-4o"}`},
		{"json spaced with escapes", `{"password" : "p\"w\\d", "n": 1}`, `{"password" : "[REDACTED]", "n": 1}`},
		{"json escaped inside a string", `{"body":"{\"token\":\"t-123\"}"}`, `{"body":"{\"token\":\"[REDACTED]\"}"}`},
		{"single quotes", `{'password': 'pw'}`, `{'password': '[REDACTED]'}`},
		{"url query", "GET https://api.example.com/v1/x?alt=json&access_token=ya29.abc&key=" + googleKey + "#f",
			"GET https://api.example.com/v1/x?alt=json&access_token=[REDACTED]&key=AIza[REDACTED]#f"},
		{"url user info", "redis://:s3cret@localhost:6379/0 and postgres://app:pw@db/app",
			"redis://:[REDACTED]@localhost:6379/0 and postgres://app:[REDACTED]@db/app"},
		{"key in kv and shape", "api_key=" + openAIProj, "api_key=[REDACTED]"},
		{"many", sluiceKey + " " + anthropic + " " + jwtTok, "sk-sluice-[REDACTED] sk-ant-[REDACTED] [REDACTED]"},

		// Near misses stay as they are.
		{"sk- word", "uses sk-learn and sk-1234", "uses sk-learn and sk-1234"},
		{"sk- inside a word", "task-abcdefghijklmnopqrstuvwxyz0123", "task-abcdefghijklmnopqrstuvwxyz0123"},
		{"sluice prefix alone", "keys look like sk-sluice-… ", "keys look like sk-sluice-… "},
		{"sluice prefix short", "sk-sluice-abc", "sk-sluice-abc"},
		{"aws too long", "AKIAIOSFODNN7EXAMPLEX", "AKIAIOSFODNN7EXAMPLEX"},
		{"aws too short", "AKIA1234", "AKIA1234"},
		{"github short", "ghp_short", "ghp_short"},
		{"jwt without dots", "eyJhbGciOiJIUzI1NiJ9", "eyJhbGciOiJIUzI1NiJ9"},
		{"basic as a word", "basic checks passed", "basic checks passed"},
		{"basic not a credential", "Basic configuration", "Basic configuration"},
		{"bearer as a word", "missing bearer token", "missing bearer token"},
		{"go error chain", "ctxtoken: verify token: signature is invalid", "ctxtoken: verify token: signature is invalid"},
		{"token counts", `max_tokens=100 {"input_tokens":12,"token_count":3}`, `max_tokens=100 {"input_tokens":12,"token_count":3}`},
		{"names ending in a secret word", "mytoken=abc monkey=banana", "mytoken=abc monkey=banana"},
		{"key id", "key_id=key_01 organization_id=org_1", "key_id=key_01 organization_id=org_1"},
		{"json null", `{"token":null,"secret":false}`, `{"token":null,"secret":false}`},
		{"plain url", "POST https://api.openai.com/v1/chat/completions", "POST https://api.openai.com/v1/chat/completions"},
		{"url without password", "https://user@example.com/x", "https://user@example.com/x"},
		{"certificate", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"},
		{"times", "at 12:30:45 took 3ms", "at 12:30:45 took 3ms"},
		{"empty", "", ""},
		{"empty value", "password= next", "password= next"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := Redact(c.in)
			if got != c.want {
				t.Errorf("Redact(%q)\n got %q\nwant %q", c.in, got, c.want)
			}
			if again := Redact(got); again != got {
				t.Errorf("not idempotent: Redact(%q) = %q", got, again)
			}
			if json.Valid([]byte(c.in)) && !json.Valid([]byte(got)) {
				t.Errorf("valid JSON became invalid: %s", got)
			}
		})
	}
}

// TestRedactInJSON checks every canary inside a JSON document: all are gone and the
// document still parses.
func TestRedactInJSON(t *testing.T) {
	for _, secret := range canaries() {
		doc, _ := json.Marshal(map[string]any{
			"model":    "gpt-4o",
			"messages": []map[string]string{{"role": "user", "content": "please use " + secret + " for this"}},
			"url":      "https://example.com/?q=1&api_key=" + secret,
		})
		got := Redact(string(doc))
		if strings.Contains(got, secret) || strings.Contains(got, secretCore(secret)) {
			t.Errorf("%.20s… survived: %s", secret, got)
		}
		if !json.Valid([]byte(got)) {
			t.Errorf("invalid JSON after redaction: %s", got)
		}
	}
}

// canaries lists every planted secret.
func canaries() []string {
	return []string{sluiceKey, openAIKey, openAIProj, openAISvc, anthropic, "Bearer " + bearerTok,
		"Basic " + basicCred, awsKeyID, awsSTSKeyID, githubPAT, githubFine, googleKey, slackTok, jwtTok, pemKey}
}

// secretCore is the part of a canary that must never appear: past any public prefix.
func secretCore(s string) string {
	switch {
	case strings.HasPrefix(s, "-----BEGIN"):
		return "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun"
	case strings.HasPrefix(s, "Bearer "), strings.HasPrefix(s, "Basic "):
		_, tok, _ := strings.Cut(s, " ")
		return tok
	}
	return s[max(0, len(s)-12):]
}

func TestRedactNoAllocWhenClean(t *testing.T) {
	lines := []string{
		"request finished",
		`proxy attempt failed: provider=openai status=502 model=gpt-4o key_id=key_01 took 1.2s: dial tcp 10.0.0.1:443: connection refused`,
		"ctxtoken: verify token: signature is invalid",
	}
	for _, s := range lines {
		if n := testing.AllocsPerRun(100, func() { _ = Redact(s) }); n != 0 {
			t.Errorf("Redact(%q): %v allocs", s, n)
		}
	}
}
