package volume

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/internal/downward"
)

// defaultFileMode is the API server's default for defaultMode; it only
// matters for pods that did not go through API defaulting.
const defaultFileMode os.FileMode = 0o644

// defaultTokenMode keeps a token private when the pod leaves the mode to us.
// Pods from the API server always carry a defaultMode (0644 for the
// auto-injected kube-api-access volume), which wins, as on the kubelet.
const defaultTokenMode os.FileMode = 0o600

// defaultTokenExpiration is what the API server would default
// serviceAccountToken.expirationSeconds to.
const defaultTokenExpiration int64 = 3600

var supportedProjections = []string{"serviceAccountToken", "configMap", "secret", "downwardAPI"}

type file struct {
	data []byte
	mode os.FileMode
}

// payload maps a cleaned, relative path inside the volume to its file.
type payload map[string]file

// add validates the path before it can reach the disk: item paths come from
// the pod spec, and a path escaping the volume would let a pod write anywhere
// the agent can.
func (p payload) add(path string, data []byte, mode os.FileMode) error {
	clean, err := cleanItemPath(path)
	if err != nil {
		return err
	}
	p[clean] = file{data: data, mode: mode}
	return nil
}

func cleanItemPath(path string) (string, error) {
	switch {
	case path == "":
		return "", errors.New("item path is empty")
	case filepath.IsAbs(path):
		return "", fmt.Errorf("item path %q must be relative", path)
	case strings.ContainsRune(path, 0):
		return "", fmt.Errorf("item path %q contains a NUL byte", path)
	}
	for _, el := range strings.Split(path, "/") {
		if el == ".." {
			return "", fmt.Errorf("item path %q must not contain '..'", path)
		}
	}
	// Names starting with ".." are reserved (by the API too) so the
	// temporary files written next to the real ones can never collide.
	if strings.HasPrefix(path, "..") {
		return "", fmt.Errorf("item path %q must not start with '..'", path)
	}
	clean := filepath.Clean(path)
	if clean == "." {
		return "", fmt.Errorf("item path %q does not name a file", path)
	}
	return clean, nil
}

// checkConflicts catches "a" and "a/b" both being files, which would
// otherwise fail halfway through writing.
func (p payload) checkConflicts() error {
	for path := range p {
		for dir := filepath.Dir(path); dir != "."; dir = filepath.Dir(dir) {
			if _, ok := p[dir]; ok {
				return fmt.Errorf("item path %q needs %q to be a directory, but another item writes a file there", path, dir)
			}
		}
	}
	return nil
}

func modeOr(m *int32, def os.FileMode) os.FileMode {
	if m == nil {
		return def
	}
	return os.FileMode(*m)
}

func checkMode(m os.FileMode) error {
	if m > 0o777 {
		return fmt.Errorf("mode %#o is out of range (0 to 0777)", uint32(m))
	}
	return nil
}

func isTrue(b *bool) bool { return b != nil && *b }

func needClient(opts Options, what string) error {
	if opts.Client == nil {
		return fmt.Errorf("cannot read %s: no Kubernetes client configured", what)
	}
	return nil
}

// keyedObject is the part of a ConfigMap or Secret the payload is built from.
type keyedObject struct {
	kind string // as spelled in a manifest, for error messages
	ns   string
	name string
	data map[string][]byte
}

func (o *keyedObject) String() string { return fmt.Sprintf("%s %s/%s", o.kind, o.ns, o.name) }

func getConfigMap(ctx context.Context, opts Options, ns, name string, optional bool) (*keyedObject, error) {
	obj := &keyedObject{kind: "configMap", ns: ns, name: name}
	if name == "" {
		return nil, errors.New("configMap name is empty")
	}
	if err := needClient(opts, obj.String()); err != nil {
		return nil, err
	}
	cm, err := opts.Client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, missingObject(obj, optional, err)
	}
	obj.data = make(map[string][]byte, len(cm.Data)+len(cm.BinaryData))
	for k, v := range cm.Data {
		obj.data[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		obj.data[k] = v
	}
	return obj, nil
}

func getSecret(ctx context.Context, opts Options, ns, name string, optional bool) (*keyedObject, error) {
	obj := &keyedObject{kind: "secret", ns: ns, name: name}
	if name == "" {
		return nil, errors.New("secret name is empty")
	}
	if err := needClient(opts, obj.String()); err != nil {
		return nil, err
	}
	s, err := opts.Client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, missingObject(obj, optional, err)
	}
	// stringData is write-only: the API server folds it into data.
	obj.data = s.Data
	return obj, nil
}

// missingObject turns an optional object's absence into an empty one, as the
// kubelet does, so the volume is mounted (empty) and fills on a later refresh.
func missingObject(obj *keyedObject, optional bool, err error) error {
	if apierrors.IsNotFound(err) {
		if optional {
			return nil
		}
		return &wrapped{msg: fmt.Sprintf("%s not found (and the volume does not mark it optional)", obj), err: err}
	}
	return &wrapped{msg: fmt.Sprintf("reading %s: %v", obj, err), err: err}
}

// wrapped keeps API errors inspectable (apierrors.IsNotFound) without
// repeating their wording in the message.
type wrapped struct {
	msg string
	err error
}

func (w *wrapped) Error() string { return w.msg }
func (w *wrapped) Unwrap() error { return w.err }

// keysToPayload follows the kubelet: without items every key becomes a file;
// with items only the listed keys do, and a missing listed key is an error
// unless the source is optional.
func keysToPayload(out payload, obj *keyedObject, items []corev1.KeyToPath, optional bool, defaultMode os.FileMode) error {
	if err := checkMode(defaultMode); err != nil {
		return fmt.Errorf("defaultMode: %w", err)
	}
	if obj == nil { // optional and absent
		return nil
	}
	if len(items) == 0 {
		for k, v := range obj.data {
			if err := out.add(k, v, defaultMode); err != nil {
				return fmt.Errorf("%s key %q: %w", obj, k, err)
			}
		}
		return nil
	}
	for _, it := range items {
		v, ok := obj.data[it.Key]
		if !ok {
			if optional {
				continue
			}
			return fmt.Errorf("%s has no key %q", obj, it.Key)
		}
		mode := modeOr(it.Mode, defaultMode)
		if err := checkMode(mode); err != nil {
			return fmt.Errorf("%s key %q: %w", obj, it.Key, err)
		}
		if err := out.add(it.Path, v, mode); err != nil {
			return fmt.Errorf("%s key %q: %w", obj, it.Key, err)
		}
	}
	return nil
}

func configMapPayload(ctx context.Context, opts Options, ns, name string, items []corev1.KeyToPath, optional *bool, defaultMode os.FileMode) (payload, error) {
	out := payload{}
	return out, addConfigMap(ctx, opts, out, ns, name, items, isTrue(optional), defaultMode)
}

func addConfigMap(ctx context.Context, opts Options, out payload, ns, name string, items []corev1.KeyToPath, optional bool, defaultMode os.FileMode) error {
	obj, err := getConfigMap(ctx, opts, ns, name, optional)
	if err != nil {
		return err
	}
	return keysToPayload(out, obj, items, optional, defaultMode)
}

func secretPayload(ctx context.Context, opts Options, ns, name string, items []corev1.KeyToPath, optional *bool, defaultMode os.FileMode) (payload, error) {
	out := payload{}
	return out, addSecret(ctx, opts, out, ns, name, items, isTrue(optional), defaultMode)
}

func addSecret(ctx context.Context, opts Options, out payload, ns, name string, items []corev1.KeyToPath, optional bool, defaultMode os.FileMode) error {
	obj, err := getSecret(ctx, opts, ns, name, optional)
	if err != nil {
		return err
	}
	return keysToPayload(out, obj, items, optional, defaultMode)
}

func downwardAPIPayload(opts Options, pod *corev1.Pod, items []corev1.DownwardAPIVolumeFile, defaultMode os.FileMode) (payload, error) {
	out := payload{}
	return out, addDownwardAPI(opts, out, pod, items, defaultMode)
}

func addDownwardAPI(opts Options, out payload, pod *corev1.Pod, items []corev1.DownwardAPIVolumeFile, defaultMode os.FileMode) error {
	if err := checkMode(defaultMode); err != nil {
		return fmt.Errorf("defaultMode: %w", err)
	}
	for _, it := range items {
		var value string
		var err error
		switch {
		case it.FieldRef != nil && it.ResourceFieldRef != nil:
			err = errors.New("sets both fieldRef and resourceFieldRef")
		case it.FieldRef != nil:
			value, err = downward.FieldValue(pod, it.FieldRef.FieldPath)
		case it.ResourceFieldRef != nil:
			// Volumes are shared by all containers, so there is no implicit
			// container: the ref must name one.
			value, err = downward.ResourceValue(pod, "", it.ResourceFieldRef, opts.NodeAllocatable)
		default:
			err = errors.New("sets neither fieldRef nor resourceFieldRef")
		}
		if err == nil {
			mode := modeOr(it.Mode, defaultMode)
			if err = checkMode(mode); err == nil {
				err = out.add(it.Path, []byte(value), mode)
			}
		}
		if err != nil {
			return fmt.Errorf("downwardAPI item %q: %w", it.Path, err)
		}
	}
	return nil
}

// projectedPayload merges all sources into one directory; a later source
// wins on a path clash, as on the kubelet.
func projectedPayload(ctx context.Context, opts Options, pod *corev1.Pod, src *corev1.ProjectedVolumeSource) (payload, error) {
	defaultMode := modeOr(src.DefaultMode, defaultFileMode)
	tokenMode := modeOr(src.DefaultMode, defaultTokenMode)
	if err := checkMode(defaultMode); err != nil {
		return nil, fmt.Errorf("defaultMode: %w", err)
	}
	out := payload{}
	for i, s := range src.Sources {
		var err error
		switch {
		case s.ConfigMap != nil:
			err = addConfigMap(ctx, opts, out, pod.Namespace, s.ConfigMap.Name, s.ConfigMap.Items, isTrue(s.ConfigMap.Optional), defaultMode)
		case s.Secret != nil:
			err = addSecret(ctx, opts, out, pod.Namespace, s.Secret.Name, s.Secret.Items, isTrue(s.Secret.Optional), defaultMode)
		case s.DownwardAPI != nil:
			err = addDownwardAPI(opts, out, pod, s.DownwardAPI.Items, defaultMode)
		case s.ServiceAccountToken != nil:
			err = addToken(ctx, opts, out, pod, s.ServiceAccountToken, tokenMode)
		default:
			if name := setField(reflect.ValueOf(&s).Elem()); name != "" {
				err = fmt.Errorf("source type %s is not supported on the Outpost node (supported: %s)", name, strings.Join(supportedProjections, ", "))
			} else {
				err = fmt.Errorf("no source type set (supported: %s)", strings.Join(supportedProjections, ", "))
			}
		}
		if err != nil {
			return nil, fmt.Errorf("projected source %d: %w", i, err)
		}
	}
	return out, nil
}

func addToken(ctx context.Context, opts Options, out payload, pod *corev1.Pod, tp *corev1.ServiceAccountTokenProjection, mode os.FileMode) error {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		return errors.New("serviceAccountToken needs the pod's spec.serviceAccountName, which is empty")
	}
	what := fmt.Sprintf("a token for serviceAccount %s/%s", pod.Namespace, sa)
	if err := needClient(opts, what); err != nil {
		return err
	}
	// No audience means "the API server's audiences", which is what
	// in-cluster clients need.
	var auds []string
	if tp.Audience != "" {
		auds = []string{tp.Audience}
	}
	exp := defaultTokenExpiration
	if tp.ExpirationSeconds != nil {
		exp = *tp.ExpirationSeconds
	}
	if err := checkMode(mode); err != nil {
		return fmt.Errorf("serviceAccountToken: %w", err)
	}
	key := tokenKey{namespace: pod.Namespace, serviceAccount: sa, podUID: string(pod.UID), audience: tp.Audience, expirationSeconds: exp}
	if opts.Tokens != nil {
		if token, ok := opts.Tokens.get(key); ok {
			if err := out.add(tp.Path, []byte(token), mode); err != nil {
				return fmt.Errorf("serviceAccountToken: %w", err)
			}
			return nil
		}
	}
	// Binding the token to the pod makes it invalid as soon as the pod is
	// deleted, instead of living on until it expires.
	req := &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			Audiences:         auds,
			ExpirationSeconds: &exp,
			BoundObjectRef: &authenticationv1.BoundObjectReference{
				Kind:       "Pod",
				APIVersion: "v1",
				Name:       pod.Name,
				UID:        pod.UID,
			},
		},
	}
	tr, err := opts.Client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	if err != nil {
		return &wrapped{msg: fmt.Sprintf("requesting %s: %v", what, err), err: err}
	}
	if tr == nil || tr.Status.Token == "" {
		return fmt.Errorf("requesting %s: the API server returned an empty token", what)
	}
	if opts.Tokens != nil {
		opts.Tokens.put(key, tr.Status)
	}
	if err := out.add(tp.Path, []byte(tr.Status.Token), mode); err != nil {
		return fmt.Errorf("serviceAccountToken: %w", err)
	}
	return nil
}
