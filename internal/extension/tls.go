package extension

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// ValidateTLS checks that certPEM holds a certificate chain (server
// certificate first) and keyPEM the unencrypted private key of its first
// certificate. The CLI calls it right after reading sslCertPemFile and
// sslKeyPemFile, so that a wrong file fails on the user's machine and not
// minutes later inside the cluster.
//
// An expired or not yet valid certificate passes: it is still a matching
// pair, and refusing it would block a rollout that replaces it soon after or
// a test with a short-lived certificate. Parse warns about it instead.
//
// The errors never quote the PEM contents, not even parser messages, which
// can contain names from the certificate: both settings are protected.
func ValidateTLS(certPEM, keyPEM []byte) error {
	_, err := checkTLS(certPEM, keyPEM)
	return err
}

// checkTLS is ValidateTLS that also returns the server certificate, for the
// checks Parse makes on top.
func checkTLS(certPEM, keyPEM []byte) (*x509.Certificate, error) {
	chain, certErr := parseChain(certPEM)
	key, keyErr := parsePrivateKey(keyPEM)
	if err := errors.Join(certErr, keyErr); err != nil {
		return nil, err
	}
	if matches(chain[0], key) {
		return chain[0], nil
	}
	for i, c := range chain[1:] {
		if matches(c, key) {
			return nil, fmt.Errorf("%s: the private key in %s belongs to certificate %d of %d, not the first: "+
				"put the server's own certificate first, followed by its intermediates",
				keySSLCertPemFile, keySSLKeyPemFile, i+2, len(chain))
		}
	}
	return nil, fmt.Errorf("%s and %s do not belong together: the private key does not match the certificate's public key",
		keySSLCertPemFile, keySSLKeyPemFile)
}

func matches(cert *x509.Certificate, key crypto.Signer) bool {
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(cert.PublicKey)
}

func parseChain(data []byte) ([]*x509.Certificate, error) {
	var chain []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		switch {
		case block.Type == "CERTIFICATE":
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%s: certificate %d is not a valid X.509 certificate", keySSLCertPemFile, len(chain)+1)
			}
			chain = append(chain, c)
		case strings.HasSuffix(block.Type, "PRIVATE KEY"):
			return nil, fmt.Errorf("%s holds a private key where the certificate belongs: are %s and %s swapped?",
				keySSLCertPemFile, keySSLCertPemFile, keySSLKeyPemFile)
		default:
			return nil, fmt.Errorf("%s: found a PEM block that is not a certificate; only CERTIFICATE blocks belong here",
				keySSLCertPemFile)
		}
	}
	if len(chain) == 0 {
		return nil, fmt.Errorf("%s: no certificate found: expected PEM text starting with -----BEGIN CERTIFICATE-----",
			keySSLCertPemFile)
	}
	return chain, nil
}

func parsePrivateKey(data []byte) (crypto.Signer, error) {
	var found *pem.Block
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		switch {
		case block.Type == "EC PARAMETERS":
			// openssl ecparam -genkey writes the curve before the key.
			continue
		case block.Type == "CERTIFICATE":
			return nil, fmt.Errorf("%s holds a certificate where the private key belongs: are %s and %s swapped?",
				keySSLKeyPemFile, keySSLCertPemFile, keySSLKeyPemFile)
		case block.Type == "ENCRYPTED PRIVATE KEY" || strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED"):
			return nil, fmt.Errorf("%s: the private key is encrypted with a passphrase, which the inference router "+
				"cannot be given: decrypt it first, e.g. openssl pkey -in key.pem -out key-plain.pem", keySSLKeyPemFile)
		case !strings.HasSuffix(block.Type, "PRIVATE KEY"):
			return nil, fmt.Errorf("%s: found a PEM block that is not a private key", keySSLKeyPemFile)
		case found != nil:
			return nil, fmt.Errorf("%s holds more than one private key: give exactly one", keySSLKeyPemFile)
		}
		found = block
	}
	if found == nil {
		return nil, fmt.Errorf("%s: no private key found: expected PEM text starting with -----BEGIN PRIVATE KEY----- "+
			"(or RSA PRIVATE KEY, EC PRIVATE KEY)", keySSLKeyPemFile)
	}
	var key any
	var err error
	switch found.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(found.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(found.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(found.Bytes)
	}
	signer, ok := key.(crypto.Signer)
	if err != nil || !ok {
		return nil, fmt.Errorf("%s: the private key cannot be used; supported are unencrypted RSA, ECDSA and Ed25519 keys "+
			"in PKCS #1, SEC 1 or PKCS #8 form", keySSLKeyPemFile)
	}
	return signer, nil
}
