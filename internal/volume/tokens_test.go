package volume

import (
	"context"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func TestTokenCacheRenewsAtFourFifths(t *testing.T) {
	// A periodic refresh must not request (and swap in) a new token every
	// time, but must renew it before it expires.
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	requests := 0
	client := fake.NewClientset()
	client.PrependReactor("create", "serviceaccounts", func(a k8stesting.Action) (bool, runtime.Object, error) {
		requests++
		return true, &authenticationv1.TokenRequest{Status: authenticationv1.TokenRequestStatus{
			Token: "token-" + string(rune('0'+requests)), ExpirationTimestamp: metav1.NewTime(now.Add(time.Hour)),
		}}, nil
	})
	cache := NewTokenCache()
	cache.now = func() time.Time { return now }
	opts := Options{Client: client, Tokens: cache}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u"}, Spec: corev1.PodSpec{ServiceAccountName: "sa"}}
	tp := &corev1.ServiceAccountTokenProjection{Path: "token"}
	token := func() string {
		t.Helper()
		out := payload{}
		if err := addToken(context.Background(), opts, out, pod, tp, 0o600); err != nil {
			t.Fatal(err)
		}
		return string(out["token"].data)
	}

	first := token()
	now = now.Add(47 * time.Minute) // before 80 % of the hour
	if got := token(); got != first || requests != 1 {
		t.Errorf("after 47 min: token %q after %d requests, want the first one (%q) after 1", got, requests, first)
	}
	now = now.Add(time.Minute + time.Second) // past 48 min
	if got := token(); got == first || requests != 2 {
		t.Errorf("after 48 min: token %q after %d requests, want a new one after 2", got, requests)
	}
	// Another audience is another token.
	tp = &corev1.ServiceAccountTokenProjection{Path: "token", Audience: "vault"}
	token()
	if requests != 3 {
		t.Errorf("%d requests, want a separate token for another audience", requests)
	}
}
