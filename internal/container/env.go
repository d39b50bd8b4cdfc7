package container

import (
	"context"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"outpost.dev/outpost/internal/downward"
)

// Sources reads what env vars may refer to.
type Sources interface {
	ConfigMap(ctx context.Context, namespace, name string) (*corev1.ConfigMap, error)
	Secret(ctx context.Context, namespace, name string) (*corev1.Secret, error)
}

// Env returns the environment of a container in the order the kubelet builds
// it: base (the node's own variables), then envFrom, then env, each value
// expanded against what came before.
func Env(ctx context.Context, src Sources, pod *corev1.Pod, c *corev1.Container, base []string, nodeAllocatable corev1.ResourceList) ([]string, error) {
	vars := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := vars[k]; !ok {
			order = append(order, k)
		}
		vars[k] = v
	}
	for _, kv := range base {
		k, v, _ := strings.Cut(kv, "=")
		set(k, v)
	}
	for _, from := range c.EnvFrom {
		data := map[string]string{}
		switch {
		case from.ConfigMapRef != nil:
			cm, err := src.ConfigMap(ctx, pod.Namespace, from.ConfigMapRef.Name)
			if err != nil {
				if optional(from.ConfigMapRef.Optional) {
					continue
				}
				return nil, fmt.Errorf("envFrom configMap %q: %w", from.ConfigMapRef.Name, err)
			}
			data = cm.Data
		case from.SecretRef != nil:
			s, err := src.Secret(ctx, pod.Namespace, from.SecretRef.Name)
			if err != nil {
				if optional(from.SecretRef.Optional) {
					continue
				}
				return nil, fmt.Errorf("envFrom secret %q: %w", from.SecretRef.Name, err)
			}
			for k, v := range s.Data {
				data[k] = string(v)
			}
		}
		keys := make([]string, 0, len(data))
		for k := range data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			set(from.Prefix+k, data[k])
		}
	}
	for _, e := range c.Env {
		v, err := envValue(ctx, src, pod, c, e, vars, nodeAllocatable)
		if err != nil {
			return nil, fmt.Errorf("env %s: %w", e.Name, err)
		}
		set(e.Name, v)
	}
	out := make([]string, 0, len(order))
	for _, k := range order {
		out = append(out, k+"="+vars[k])
	}
	return out, nil
}

func envValue(ctx context.Context, src Sources, pod *corev1.Pod, c *corev1.Container, e corev1.EnvVar, vars map[string]string, alloc corev1.ResourceList) (string, error) {
	from := e.ValueFrom
	if from == nil {
		return Expand(e.Value, vars), nil
	}
	switch {
	case from.FieldRef != nil:
		return downward.FieldValue(pod, from.FieldRef.FieldPath)
	case from.ResourceFieldRef != nil:
		return downward.ResourceValue(pod, c.Name, from.ResourceFieldRef, alloc)
	case from.ConfigMapKeyRef != nil:
		ref := from.ConfigMapKeyRef
		cm, err := src.ConfigMap(ctx, pod.Namespace, ref.Name)
		if err == nil {
			if v, ok := cm.Data[ref.Key]; ok {
				return v, nil
			}
			err = fmt.Errorf("configMap %q has no key %q", ref.Name, ref.Key)
		}
		if optional(ref.Optional) {
			return "", nil
		}
		return "", err
	case from.SecretKeyRef != nil:
		ref := from.SecretKeyRef
		s, err := src.Secret(ctx, pod.Namespace, ref.Name)
		if err == nil {
			if v, ok := s.Data[ref.Key]; ok {
				return string(v), nil
			}
			err = fmt.Errorf("secret %q has no key %q", ref.Name, ref.Key)
		}
		if optional(ref.Optional) {
			return "", nil
		}
		return "", err
	}
	return "", fmt.Errorf("valueFrom: none of fieldRef, resourceFieldRef, configMapKeyRef, secretKeyRef is set")
}

func optional(b *bool) bool { return b != nil && *b }

// Expand replaces $(VAR) with the value of VAR when it is defined, leaves it
// as written otherwise, and turns $$ into $, as Kubernetes does for command,
// args and env values.
func Expand(s string, vars map[string]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := vars[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

// IsOutpostImage tells whether an image name refers to this project's image,
// whose entrypoint is the local outpost binary: outpost, outpost:TAG,
// any/registry/outpost:TAG, with or without a digest.
func IsOutpostImage(image string) bool {
	return imageName(image) == "outpost"
}

// Argv returns the command line of a container. No image is ever pulled: an
// image of the shim table (imageShims) runs the host program that stands for
// it, with the image's entrypoint and default command where the container
// gives none, as a runtime would; any other image runs the container's
// command (or, with no command, its args, as for images without an
// ENTRYPOINT) on the host.
func Argv(c *corev1.Container, env []string, bins Binaries) ([]string, error) {
	vars := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	// $(VAR) expands in command and args only, never in what the image declares.
	expand := func(words []string) []string {
		out := make([]string, len(words))
		for i, w := range words {
			out[i] = Expand(w, vars)
		}
		return out
	}
	command, args := expand(c.Command), expand(c.Args)
	shim := shimFor(c.Image)
	var entrypoint, cmd []string
	if shim != nil {
		if shim.entrypoint != nil && len(command) == 0 {
			var err error
			if entrypoint, err = shim.entrypoint(bins); err != nil {
				return nil, fmt.Errorf("image %q: %w", c.Image, err)
			}
		}
		cmd = shim.cmd
	}
	// Kubernetes' rule: command replaces the ENTRYPOINT and args the CMD.
	var argv []string
	switch {
	case len(command) > 0:
		argv = append(command, args...)
	case len(args) > 0:
		argv = append(entrypoint, args...)
	default:
		argv = append(entrypoint, cmd...)
	}
	if len(argv) == 0 {
		return nil, fmt.Errorf("image %q: images are not pulled on the Outpost node, so the container needs a command (or args) to run on the host; only the images of the shim table (outpost, pause, busybox, agnhost, python, httpd) have a default command", c.Image)
	}
	if shim != nil && shim.program != nil && (len(command) > 0 || len(entrypoint) == 0) {
		// The first word is a program of the image: its host stand-in runs it.
		prefix, err := shim.program(argv[0], bins)
		if err != nil {
			return nil, fmt.Errorf("image %q: %w", c.Image, err)
		}
		if prefix != nil {
			argv = append(prefix, argv[1:]...)
		}
	}
	return argv, nil
}
