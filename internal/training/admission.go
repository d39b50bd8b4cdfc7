package training

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"outpost.dev/outpost/internal/kubenode"
)

// Admission is all or nothing, as gang scheduling is: a job's pods are
// created only once every one of them has a node with room for it, and each
// is bound to its node by the operator (spec.nodeName), so no pod of a job
// can wait for room while the others hold theirs. The operator is thereby
// the scheduler of these pods, and counts what every pod of the cluster
// requests, as a scheduler does.

// nodeState is a node as admission sees it.
type nodeState struct {
	name   string
	labels map[string]string
	// notUsable says why no pod may be placed there now ("" when one may):
	// the node is not Ready, or it is cordoned.
	notUsable   string
	allocatable corev1.ResourceList
	// free is allocatable less what the node's pods request and what the
	// operator has promised to pods the cache does not show yet.
	free corev1.ResourceList
}

// reservation is room promised to a pod the operator creates or has just
// created, which the pod cache does not show yet.
type reservation struct {
	node     string
	requests corev1.ResourceList
}

// snapshot returns the nodes with their free room, sorted by name.
func snapshot(nodes []corev1.Node, pods []corev1.Pod, reserved []reservation) []*nodeState {
	byName := map[string]*nodeState{}
	for i := range nodes {
		n := &nodes[i]
		s := &nodeState{name: n.Name, labels: n.Labels, allocatable: n.Status.Allocatable.DeepCopy(), free: n.Status.Allocatable.DeepCopy()}
		switch {
		case !kubenode.Ready(n):
			s.notUsable = "not ready"
		case n.Spec.Unschedulable:
			s.notUsable = "cordoned"
		}
		byName[n.Name] = s
	}
	for i := range pods {
		p := &pods[i]
		// A pod being deleted still runs until it is gone, so it still holds
		// its room; a finished one holds none.
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		if s := byName[p.Spec.NodeName]; s != nil {
			subFrom(s.free, podRequests(p))
		}
	}
	for _, r := range reserved {
		if s := byName[r.node]; s != nil {
			subFrom(s.free, r.requests)
		}
	}
	out := slices.Collect(maps.Values(byName))
	slices.SortFunc(out, func(a, b *nodeState) int { return strings.Compare(a.name, b.name) })
	return out
}

// demand is what a job asks for: count pods, each requesting requests, on
// nodes whose labels include nodeSelector.
type demand struct {
	instanceType string
	count        int
	requests     corev1.ResourceList
	nodeSelector map[string]string
}

// verdict is admission's answer for one job: exactly one field is set.
type verdict struct {
	// nodes is the placement: instance i runs on nodes[i].
	nodes []string
	// wait says what the job waits for (it stays Queued).
	wait string
	// never says why no amount of waiting would let the job run.
	never string
}

// admit decides for d after the jobs ahead of it in the queue, in order:
// each of those that fits takes its room first. One that does not fit does
// not hold back the jobs behind it (Kueue's BestEffortFIFO): a small job may
// start while a large one ahead waits for a whole node, at the price that a
// stream of small jobs can keep the large one waiting.
func admit(cluster []*nodeState, ahead []demand, d demand) verdict {
	for _, a := range ahead {
		place(cluster, a)
	}
	return place(cluster, d)
}

// maxListed bounds the nodes a message names.
const maxListed = 5

// place finds a node for each of d's pods, first fit in name order, and
// takes the room from cluster when all of them have one.
func place(cluster []*nodeState, d demand) verdict {
	if len(cluster) == 0 {
		// A cluster whose node has not registered yet (it is starting): not
		// a reason to fail a job that the workspace found a node for.
		return verdict{wait: "waiting for available resources: the cluster has no node yet"}
	}
	sel := labels.SelectorFromSet(d.nodeSelector)
	var matching []*nodeState
	for _, n := range cluster {
		if sel.Matches(labels.Set(n.labels)) {
			matching = append(matching, n)
		}
	}
	need := fmt.Sprintf("%d x (%s)", d.count, describe(d.requests))
	if len(matching) == 0 {
		return verdict{never: fmt.Sprintf("no node has the labels of instance type %q (nodeSelector %s); the nodes are %s",
			d.instanceType, sel, listNodes(cluster, func(n *nodeState) string { return n.name }))}
	}
	var most int64
	for _, n := range matching {
		most += howMany(d.requests, n.allocatable)
	}
	if most < int64(d.count) {
		return verdict{never: fmt.Sprintf("instance type %q needs %s, but its nodes can hold %d such pods even when empty: %s",
			d.instanceType, need, most, listNodes(matching, func(n *nodeState) string {
				return n.name + " " + describeFree(n.allocatable, hasGPU(d.requests)) + " allocatable"
			}))}
	}

	free := make([]corev1.ResourceList, len(matching))
	for i, n := range matching {
		free[i] = n.free.DeepCopy()
	}
	var chosen []int
	for range d.count {
		at := -1
		for i, n := range matching {
			if n.notUsable == "" && fits(d.requests, free[i]) {
				at = i
				break
			}
		}
		if at < 0 {
			break
		}
		subFrom(free[at], d.requests)
		chosen = append(chosen, at)
	}
	if len(chosen) < d.count {
		return verdict{wait: "waiting for available resources: needs " + need + ", " + freeNow(matching, hasGPU(d.requests))}
	}
	nodes := make([]string, len(chosen))
	for i, at := range chosen {
		nodes[i] = matching[at].name
		subFrom(matching[at].free, d.requests)
	}
	return verdict{nodes: nodes}
}

func hasGPU(r corev1.ResourceList) bool {
	q, ok := r[GPU]
	return ok && q.Sign() > 0
}

func freeNow(nodes []*nodeState, withGPU bool) string {
	var usable, not []*nodeState
	for _, n := range nodes {
		if n.notUsable == "" {
			usable = append(usable, n)
		} else {
			not = append(not, n)
		}
	}
	var parts []string
	if len(usable) > 0 {
		parts = append(parts, "free now: "+listNodes(usable, func(n *nodeState) string { return n.name + " " + describeFree(n.free, withGPU) }))
	}
	if len(not) > 0 {
		parts = append(parts, "unavailable: "+listNodes(not, func(n *nodeState) string { return n.name + " " + n.notUsable }))
	}
	return strings.Join(parts, "; ")
}

func listNodes(nodes []*nodeState, show func(*nodeState) string) string {
	var parts []string
	for i, n := range nodes {
		if i == maxListed {
			parts = append(parts, fmt.Sprintf("and %d more", len(nodes)-maxListed))
			break
		}
		parts = append(parts, show(n))
	}
	return strings.Join(parts, "; ")
}
