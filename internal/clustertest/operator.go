package clustertest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// InstallRendered creates, of the extension's rendered objects, those keep
// picks and every CustomResourceDefinition, and waits until the CRDs are
// established: what a test needs to run one component of the extension
// under its own service account and RBAC, so that a permission its role
// lacks fails the test.
func InstallRendered(ctx context.Context, objs []*unstructured.Unstructured, keep func(kind, name string) bool) error {
	c, err := client.New(Cluster.REST, client.Options{})
	if err != nil {
		return err
	}
	crds, err := apiextensionsclient.NewForConfig(Cluster.REST)
	if err != nil {
		return err
	}
	var names []string
	for _, o := range objs {
		kind, name := o.GetKind(), o.GetName()
		switch {
		case kind == "CustomResourceDefinition":
			var crd apiextensionsv1.CustomResourceDefinition
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &crd); err != nil {
				return err
			}
			if _, err := crds.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, &crd, metav1.CreateOptions{}); err != nil {
				return fmt.Errorf("the API server refuses CRD %s: %w", name, err)
			}
			names = append(names, name)
		case keep(kind, name):
			if err := c.Create(ctx, o.DeepCopy()); err != nil {
				return fmt.Errorf("create %s %s: %w", kind, name, err)
			}
		}
	}
	for _, name := range names {
		var last *apiextensionsv1.CustomResourceDefinition
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			crd, err := crds.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			last = crd
			for _, c := range crd.Status.Conditions {
				if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			var conds any
			if last != nil {
				conds = last.Status.Conditions
			}
			return fmt.Errorf("CRD %s not established (%v): %+v", name, err, conds)
		}
	}
	return nil
}

// WaitHealthz waits until http://addr/healthz answers 200: an operator's
// probe, which answers once its caches are filled. log is the operator's,
// shown when it never does.
func WaitHealthz(ctx context.Context, addr string, log *Log) error {
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			return false, nil // not listening yet
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		return fmt.Errorf("%s/healthz never answered 200 (%v):\n%s", addr, err, log.String())
	}
	return nil
}

// SelfSigned makes a certificate for 127.0.0.1 that is its own CA, valid
// from an hour ago for validFor, and returns it with its PEM and its key's.
func SelfSigned(cn string, validFor time.Duration) (tls.Certificate, []byte, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(validFor),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, nil, err
	}
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return tls.Certificate{}, nil, nil, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), nil
}
