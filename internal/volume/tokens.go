package volume

import (
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
)

// TokenCache keeps the ServiceAccount tokens written into projected volumes,
// so that a periodic refresh does not request (and swap in) a new token every
// time. A token is renewed once 80 % of its lifetime has passed, or after 24
// hours, as the kubelet's token manager does. Safe for concurrent use.
type TokenCache struct {
	mu      sync.Mutex
	entries map[tokenKey]tokenEntry
	now     func() time.Time
}

// tokenKey is everything the TokenRequest depends on: the same volume of the
// same pod asks with the same key.
type tokenKey struct {
	namespace, serviceAccount, podUID, audience string
	expirationSeconds                           int64
}

type tokenEntry struct {
	token   string
	renewAt time.Time
}

const maxTokenAge = 24 * time.Hour

// NewTokenCache returns an empty cache.
func NewTokenCache() *TokenCache {
	return &TokenCache{entries: map[tokenKey]tokenEntry{}, now: time.Now}
}

func (c *TokenCache) get(k tokenKey) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	// Entries of pods that are gone are never asked for again; dropping
	// every due entry here keeps the cache as small as the live pods' tokens.
	for key, e := range c.entries {
		if !now.Before(e.renewAt) {
			delete(c.entries, key)
		}
	}
	e, ok := c.entries[k]
	return e.token, ok
}

// put records a token the API server just issued at the time of the call.
func (c *TokenCache) put(k tokenKey, status authenticationv1.TokenRequestStatus) {
	c.mu.Lock()
	defer c.mu.Unlock()
	issued := c.now()
	lifetime := time.Duration(k.expirationSeconds) * time.Second
	// The server may shorten (or, with extended tokens, lengthen) what was
	// asked for: its expiration is the one that counts.
	if exp := status.ExpirationTimestamp.Time; !exp.IsZero() {
		lifetime = exp.Sub(issued)
	}
	age := min(lifetime*4/5, maxTokenAge)
	c.entries[k] = tokenEntry{token: status.Token, renewAt: issued.Add(age)}
}
