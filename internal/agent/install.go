package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
)

// Namespace is where the agent runs, as Azure Arc's agents do.
const Namespace = "azure-arc"

const agentName = "outpost-agent"

// Environment variables the agent reads (from its Secret in the cluster).
const (
	EnvWorkspaceURL  = "OUTPOST_WORKSPACE_URL"
	EnvResourceGroup = "OUTPOST_RESOURCE_GROUP"
	EnvCluster       = "OUTPOST_CLUSTER"
	EnvToken         = "OUTPOST_AGENT_TOKEN"
	EnvCA            = "OUTPOST_WORKSPACE_CA"
	EnvImage         = "OUTPOST_IMAGE"
	// The proxy settings have names of their own, not HTTPS_PROXY/NO_PROXY:
	// those would send everything in the pod that honours them through the
	// proxy, the agent's calls to its own apiserver included.
	EnvProxy   = "OUTPOST_PROXY_HTTPS"
	EnvNoProxy = "OUTPOST_PROXY_SKIP_RANGE"
)

// ConfigFromEnv reads the agent's configuration as Install hands it over.
func ConfigFromEnv() Config {
	return Config{WorkspaceURL: os.Getenv(EnvWorkspaceURL), ResourceGroup: os.Getenv(EnvResourceGroup),
		Cluster: os.Getenv(EnvCluster), Token: os.Getenv(EnvToken), CAPEM: []byte(os.Getenv(EnvCA)),
		Proxy: os.Getenv(EnvProxy), NoProxy: os.Getenv(EnvNoProxy), Image: os.Getenv(EnvImage)}
}

// Registration names the workspace registration an installed agent serves.
type Registration struct {
	WorkspaceURL  string
	ResourceGroup string
	Cluster       string
}

func (r Registration) String() string {
	return fmt.Sprintf("%s/%s of workspace %s", r.ResourceGroup, r.Cluster, r.WorkspaceURL)
}

// Installed tells which registration the agent installed in the cluster
// serves, by its Secret; nil when there is no agent. An agent whose
// namespace is terminating counts as installed until it is gone: see
// Removing and WaitRemoved.
func Installed(ctx context.Context, kube kubernetes.Interface) (*Registration, error) {
	s, err := kube.CoreV1().Secrets(Namespace).Get(ctx, agentName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the agent's secret %s/%s: %w", Namespace, agentName, err)
	}
	return &Registration{WorkspaceURL: string(s.Data[EnvWorkspaceURL]), ResourceGroup: string(s.Data[EnvResourceGroup]),
		Cluster: string(s.Data[EnvCluster])}, nil
}

// Removing tells whether the agent's namespace is terminating, as it is
// for a while after Uninstall.
func Removing(ctx context.Context, kube kubernetes.Interface) (bool, error) {
	ns, err := kube.CoreV1().Namespaces().Get(ctx, Namespace, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read namespace %s: %w", Namespace, err)
	}
	return ns.DeletionTimestamp != nil, nil
}

// WaitRemoved waits until the agent's terminating namespace is gone: an
// install into it would be refused.
func WaitRemoved(ctx context.Context, kube kubernetes.Interface, timeout time.Duration) error {
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		_, err := kube.CoreV1().Namespaces().Get(ctx, Namespace, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
	if err != nil {
		return fmt.Errorf("namespace %s of a removed agent is still terminating after %s (see `kubectl get ns %s -o yaml`): %w", Namespace, timeout, Namespace, err)
	}
	return nil
}

// Install puts the agent into the cluster: its namespace, a Secret with the
// cluster's credential, a ServiceAccount bound to cluster-admin (it installs
// cluster-wide extensions), and a Deployment running `outpost agent run`.
// Applying it again updates it in place.
func Install(ctx context.Context, kube kubernetes.Interface, cfg Config) error {
	labels := map[string]string{"app": agentName, "app.kubernetes.io/managed-by": "outpost"}
	meta := metav1.ObjectMeta{Name: agentName, Namespace: Namespace, Labels: labels}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace, Labels: labels}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	secret := &corev1.Secret{ObjectMeta: meta, StringData: map[string]string{
		EnvWorkspaceURL: cfg.WorkspaceURL, EnvResourceGroup: cfg.ResourceGroup, EnvCluster: cfg.Cluster,
		EnvToken: cfg.Token, EnvCA: string(cfg.CAPEM), EnvImage: cfg.Image,
		EnvProxy: cfg.Proxy, EnvNoProxy: cfg.NoProxy,
	}}
	sa := &corev1.ServiceAccount{ObjectMeta: meta}
	crb := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: agentName, Labels: labels},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: agentName, Namespace: Namespace}}}
	dep := &appsv1.Deployment{ObjectMeta: meta, Spec: appsv1.DeploymentSpec{
		Replicas: ptr.To[int32](1),
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": agentName}},
		// Recreate: two agents of one cluster would both apply.
		Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
		Template: corev1.PodTemplateSpec{
			// The pod reads the Secret at start only: a new registration
			// (a forced connect, a new token) must restart it.
			ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{"outpost.dev/config-sha256": configHash(secret.StringData)}},
			Spec: corev1.PodSpec{
				ServiceAccountName:            agentName,
				TerminationGracePeriodSeconds: ptr.To[int64](5),
				Containers: []corev1.Container{{
					Name: "agent", Image: cfg.Image, Args: []string{"agent", "run"},
					EnvFrom:   []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: agentName}}}},
					Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{"cpu": mustQuantity("20m"), "memory": mustQuantity("64Mi")}},
				}},
			},
		},
	}}
	if err := upsert(ctx, kube.CoreV1().Secrets(Namespace).Create, kube.CoreV1().Secrets(Namespace).Update, secret); err != nil {
		return fmt.Errorf("agent secret: %w", err)
	}
	if err := upsert(ctx, kube.CoreV1().ServiceAccounts(Namespace).Create, kube.CoreV1().ServiceAccounts(Namespace).Update, sa); err != nil {
		return fmt.Errorf("agent service account: %w", err)
	}
	if err := upsert(ctx, kube.RbacV1().ClusterRoleBindings().Create, kube.RbacV1().ClusterRoleBindings().Update, crb); err != nil {
		return fmt.Errorf("agent role binding: %w", err)
	}
	if err := upsert(ctx, kube.AppsV1().Deployments(Namespace).Create, kube.AppsV1().Deployments(Namespace).Update, dep); err != nil {
		return fmt.Errorf("agent deployment: %w", err)
	}
	return nil
}

// configHash fingerprints the agent's settings; the token in them is random
// and long, so the hash tells nothing about it.
func configHash(data map[string]string) string {
	h := sha256.New()
	for _, k := range slices.Sorted(maps.Keys(data)) {
		fmt.Fprintf(h, "%s=%q\n", k, data[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}

func upsert[T metav1.Object](ctx context.Context, create func(context.Context, T, metav1.CreateOptions) (T, error),
	update func(context.Context, T, metav1.UpdateOptions) (T, error), obj T) error {
	_, err := create(ctx, obj, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		_, err = update(ctx, obj, metav1.UpdateOptions{})
	}
	return err
}

// Uninstall removes the agent and everything the extensions it applied
// created (their objects carry the extension label), and waits for nothing:
// namespaces finish terminating in the background.
func Uninstall(ctx context.Context, rc *rest.Config) error {
	kube, dyn, err := clients(rc)
	if err != nil {
		return err
	}
	// Pruning fails before the agent's namespace, which holds the
	// inventories, goes: a retry then still finds everything.
	if err := pruneEverything(ctx, rc, kube, dyn); err != nil {
		return err
	}
	err = kube.RbacV1().ClusterRoleBindings().Delete(ctx, agentName, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	err = kube.CoreV1().Namespaces().Delete(ctx, Namespace, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return nil
}

func mustQuantity(s string) resource.Quantity { return resource.MustParse(s) }

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
