package endpointauth

import (
	"errors"
	"testing"
	"time"
)

func TestKeys(t *testing.T) {
	a, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	if a == b || len(a) != 43 {
		t.Fatalf("keys %q and %q: want two different 43-character keys", a, b)
	}
	for _, c := range []struct {
		presented string
		keys      []string
		want      bool
	}{
		{a, []string{a, b}, true},
		{b, []string{a, b}, true},
		{a + "x", []string{a, b}, false},
		{"", []string{"", b}, false},
		{"", nil, false},
	} {
		if got := MatchKey(c.presented, c.keys...); got != c.want {
			t.Errorf("MatchKey(%q, %q) = %v, want %v", c.presented, c.keys, got, c.want)
		}
	}
}

func TestTokens(t *testing.T) {
	now := time.Date(2026, 11, 28, 4, 0, 0, 0, time.UTC)
	tok, exp, err := IssueToken("k1", "ep", now)
	if err != nil {
		t.Fatal(err)
	}
	if !exp.Equal(now.Add(TokenTTL)) {
		t.Fatalf("expiry %v, want %v", exp, now.Add(TokenTTL))
	}
	if err := VerifyToken("k1", "ep", tok, now.Add(time.Minute)); err != nil {
		t.Fatalf("a fresh token: %v", err)
	}
	for name, c := range map[string]struct {
		key, ep, tok string
		at           time.Time
		want         error
	}{
		"expired":        {"k1", "ep", tok, exp, ErrExpiredToken},
		"other key":      {"k2", "ep", tok, now, ErrInvalidToken},
		"other endpoint": {"k1", "ep2", tok, now, ErrInvalidToken},
		"tampered":       {"k1", "ep", tok[:len(tok)-2] + "AA", now, ErrInvalidToken},
		"not a token":    {"k1", "ep", "garbage", now, ErrInvalidToken},
		"no sign key":    {"", "ep", tok, now, ErrInvalidToken},
	} {
		if err := VerifyToken(c.key, c.ep, c.tok, c.at); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", name, err, c.want)
		}
	}
}
