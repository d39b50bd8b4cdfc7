package extension

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"
)

// certOpts shapes a test certificate; the zero value is a server certificate
// for scoring.example.com that is valid now.
type certOpts struct {
	names     []string
	notBefore time.Time
	notAfter  time.Time
	key       crypto.Signer // generated (ECDSA P-256) when nil
	parent    *x509.Certificate
	parentKey crypto.Signer
	isCA      bool
}

type testCert struct {
	cert    *x509.Certificate
	key     crypto.Signer
	certPEM []byte
	keyPEM  []byte // PKCS #8
}

func newCert(t *testing.T, o certOpts) testCert {
	t.Helper()
	if o.names == nil {
		o.names = []string{"scoring.example.com"}
	}
	if o.notBefore.IsZero() {
		o.notBefore = time.Now().Add(-time.Hour)
	}
	if o.notAfter.IsZero() {
		o.notAfter = time.Now().Add(24 * time.Hour)
	}
	if o.key == nil {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		o.key = k
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: o.names[0]},
		DNSNames:              o.names,
		NotBefore:             o.notBefore,
		NotAfter:              o.notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  o.isCA,
	}
	parent, parentKey := tmpl, o.key
	if o.parent != nil {
		parent, parentKey = o.parent, o.parentKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, o.key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(o.key)
	if err != nil {
		t.Fatal(err)
	}
	return testCert{
		cert:    cert,
		key:     o.key,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}
}

func pemBlock(typ string, headers map[string]string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Headers: headers, Bytes: der})
}

func join(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestValidateTLS(t *testing.T) {
	good := newCert(t, certOpts{})
	other := newCert(t, certOpts{})
	ecKey := good.key.(*ecdsa.PrivateKey)
	sec1, err := x509.MarshalECPrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ed := newCert(t, certOpts{key: edKey})
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaCert := newCert(t, certOpts{key: rsaKey})
	ca := newCert(t, certOpts{names: []string{"Test CA"}, isCA: true})
	leaf := newCert(t, certOpts{parent: ca.cert, parentKey: ca.key})
	expired := newCert(t, certOpts{notBefore: time.Now().Add(-48 * time.Hour), notAfter: time.Now().Add(-24 * time.Hour)})
	xkey, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	x25519DER, err := x509.MarshalPKCS8PrivateKey(xkey)
	if err != nil {
		t.Fatal(err)
	}
	encryptedHeaders := map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-256-CBC,00112233445566778899AABBCCDDEEFF"}

	tests := []struct {
		name      string
		cert, key []byte
		want      []string // substrings of the error; none means valid
	}{
		{name: "ECDSA PKCS #8", cert: good.certPEM, key: good.keyPEM},
		{name: "ECDSA SEC 1", cert: good.certPEM, key: pemBlock("EC PRIVATE KEY", nil, sec1)},
		{name: "openssl ecparam output with EC PARAMETERS first", cert: good.certPEM,
			key: join(pemBlock("EC PARAMETERS", nil, []byte{6, 8, 42, 134, 72, 206, 61, 3, 1, 7}), pemBlock("EC PRIVATE KEY", nil, sec1))},
		{name: "RSA PKCS #1", cert: rsaCert.certPEM, key: pemBlock("RSA PRIVATE KEY", nil, x509.MarshalPKCS1PrivateKey(rsaKey))},
		{name: "Ed25519", cert: ed.certPEM, key: ed.keyPEM},
		{name: "chain with the server certificate first", cert: join(leaf.certPEM, ca.certPEM), key: leaf.keyPEM},
		{name: "text around the PEM blocks is ignored", cert: join([]byte("subject=CN=x\n"), good.certPEM), key: good.keyPEM},
		// Chosen: an expired certificate is a valid pair; Parse warns instead.
		{name: "expired certificate is accepted", cert: expired.certPEM, key: expired.keyPEM},

		{name: "mismatched key", cert: good.certPEM, key: other.keyPEM,
			want: []string{"sslCertPemFile and sslKeyPemFile do not belong together", "does not match"}},
		{name: "chain in the wrong order", cert: join(ca.certPEM, leaf.certPEM), key: leaf.keyPEM,
			want: []string{"belongs to certificate 2 of 2, not the first", "server's own certificate first"}},
		{name: "garbage in both", cert: []byte("not a certificate"), key: []byte("not a key"),
			want: []string{"sslCertPemFile: no certificate found", "BEGIN CERTIFICATE", "sslKeyPemFile: no private key found"}},
		{name: "empty", cert: nil, key: nil,
			want: []string{"sslCertPemFile: no certificate found", "sslKeyPemFile: no private key found"}},
		{name: "corrupt certificate", cert: pemBlock("CERTIFICATE", nil, []byte("junk")), key: good.keyPEM,
			want: []string{"sslCertPemFile: certificate 1 is not a valid X.509 certificate"}},
		{name: "corrupt key", cert: good.certPEM, key: pemBlock("PRIVATE KEY", nil, []byte("junk")),
			want: []string{"sslKeyPemFile: the private key cannot be used", "RSA, ECDSA and Ed25519"}},
		{name: "encrypted legacy PEM", cert: good.certPEM, key: pemBlock("EC PRIVATE KEY", encryptedHeaders, []byte("ciphertext")),
			want: []string{"sslKeyPemFile: the private key is encrypted with a passphrase", "decrypt it first"}},
		{name: "encrypted PKCS #8", cert: good.certPEM, key: pemBlock("ENCRYPTED PRIVATE KEY", nil, []byte("ciphertext")),
			want: []string{"sslKeyPemFile: the private key is encrypted with a passphrase"}},
		{name: "swapped", cert: good.keyPEM, key: good.certPEM,
			want: []string{"sslCertPemFile holds a private key where the certificate belongs", "swapped",
				"sslKeyPemFile holds a certificate where the private key belongs"}},
		{name: "two keys", cert: good.certPEM, key: join(good.keyPEM, other.keyPEM),
			want: []string{"sslKeyPemFile holds more than one private key"}},
		{name: "public key instead of certificate", cert: pemBlock("PUBLIC KEY", nil, []byte("x")), key: good.keyPEM,
			want: []string{"sslCertPemFile: found a PEM block that is not a certificate"}},
		{name: "X25519 key cannot sign", cert: good.certPEM, key: pemBlock("PRIVATE KEY", nil, x25519DER),
			want: []string{"sslKeyPemFile: the private key cannot be used"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateTLS(tt.cert, tt.key)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("ValidateTLS: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("ValidateTLS succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
			assertNoPEMBody(t, err.Error(), tt.cert, tt.key)
		})
	}
}

// assertNoPEMBody fails when text quotes any base64 line or other content
// line of the given PEM data.
func assertNoPEMBody(t *testing.T, text string, pems ...[]byte) {
	t.Helper()
	for _, p := range pems {
		for line := range strings.Lines(string(p)) {
			line = strings.TrimSpace(line)
			if len(line) < 8 || strings.HasPrefix(line, "-----") {
				continue
			}
			if strings.Contains(text, line) {
				t.Errorf("message quotes protected PEM content %q:\n%s", line, text)
			}
		}
	}
}
