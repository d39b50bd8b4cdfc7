// Package endpointauth is how callers of an online endpoint prove who they
// are: the endpoint's keys (auth_mode key) and the aml_tokens the workspace
// issues (auth_mode aml_token), signed with the endpoint's token key and
// checked by the inference router without asking the workspace.
package endpointauth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// TokenTTL is how long an aml_token is good for (as Azure ML's).
const TokenTTL = time.Hour

// Errors of VerifyToken.
var (
	ErrInvalidToken = errors.New("the token is not valid for this endpoint")
	ErrExpiredToken = errors.New("the token has expired")
)

const tokenPrefix = "v1."

var b64 = base64.RawURLEncoding

// NewKey returns a fresh random key (256 bits, URL-safe base64).
func NewKey() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate a key: %w", err)
	}
	return b64.EncodeToString(b), nil
}

// MatchKey reports whether presented is one of keys, in time that does not
// depend on where they differ. Empty keys never match.
func MatchKey(presented string, keys ...string) bool {
	ok := 0
	for _, k := range keys {
		if k == "" {
			continue
		}
		ok |= subtle.ConstantTimeCompare([]byte(presented), []byte(k))
	}
	return ok == 1
}

type claims struct {
	Endpoint string `json:"ep"`
	Expiry   int64  `json:"exp"` // Unix seconds
}

// IssueToken returns an aml_token for endpoint, signed with signKey, and its
// expiry.
func IssueToken(signKey, endpoint string, now time.Time) (string, time.Time, error) {
	exp := now.Add(TokenTTL).Truncate(time.Second)
	payload, err := json.Marshal(claims{Endpoint: endpoint, Expiry: exp.Unix()})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("encode the token: %w", err)
	}
	body := tokenPrefix + b64.EncodeToString(payload)
	return body + "." + sign(signKey, body), exp, nil
}

// VerifyToken checks that token was issued for endpoint with signKey and has
// not expired at now.
func VerifyToken(signKey, endpoint, token string, now time.Time) error {
	if signKey == "" || !strings.HasPrefix(token, tokenPrefix) {
		return ErrInvalidToken
	}
	i := strings.LastIndexByte(token, '.')
	if i <= len(tokenPrefix) {
		return ErrInvalidToken
	}
	body, sig := token[:i], token[i+1:]
	if !hmac.Equal([]byte(sig), []byte(sign(signKey, body))) {
		return ErrInvalidToken
	}
	payload, err := b64.DecodeString(body[len(tokenPrefix):])
	if err != nil {
		return ErrInvalidToken
	}
	var c claims
	if err := json.Unmarshal(payload, &c); err != nil || c.Endpoint != endpoint {
		return ErrInvalidToken
	}
	if !now.Before(time.Unix(c.Expiry, 0)) {
		return ErrExpiredToken
	}
	return nil
}

func sign(key, body string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(body))
	return b64.EncodeToString(m.Sum(nil))
}
