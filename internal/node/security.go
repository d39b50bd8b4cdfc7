package node

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// ignoredSecurity lists the restrictions a pod asks for that the process node
// does not provide: its containers run as the node's user (root), with the
// node's capabilities, on the host's files (read-only where
// readOnlyRootFilesystem asks), without seccomp, AppArmor or SELinux. Settings that a root process satisfies anyway (runAsUser: 0,
// privileged, added capabilities) are not listed.
func ignoredSecurity(pod *corev1.Pod) []string {
	var out []string
	if sc := pod.Spec.SecurityContext; sc != nil {
		add := func(field string) { out = append(out, "spec.securityContext."+field) }
		common(sc.RunAsUser, sc.RunAsGroup, sc.RunAsNonRoot, sc.SeccompProfile, sc.AppArmorProfile, sc.SELinuxOptions, add)
		if sc.FSGroup != nil {
			add("fsGroup")
		}
		if len(sc.SupplementalGroups) > 0 {
			add("supplementalGroups")
		}
		if len(sc.Sysctls) > 0 {
			add("sysctls")
		}
	}
	all := append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...)
	for _, c := range all {
		sc := c.SecurityContext
		if sc == nil {
			continue
		}
		add := func(field string) { out = append(out, fmt.Sprintf("container %s: securityContext.%s", c.Name, field)) }
		common(sc.RunAsUser, sc.RunAsGroup, sc.RunAsNonRoot, sc.SeccompProfile, sc.AppArmorProfile, sc.SELinuxOptions, add)
		if sc.Capabilities != nil && len(sc.Capabilities.Drop) > 0 {
			add("capabilities.drop")
		}
		if sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
			add("allowPrivilegeEscalation")
		}
		if sc.ProcMount != nil && *sc.ProcMount != corev1.DefaultProcMount {
			add("procMount")
		}
	}
	return out
}

// common checks the fields pod and container security contexts share.
func common(user, group *int64, nonRoot *bool, seccomp *corev1.SeccompProfile, apparmor *corev1.AppArmorProfile,
	selinux *corev1.SELinuxOptions, add func(string)) {
	if user != nil && *user != 0 {
		add("runAsUser")
	}
	if group != nil && *group != 0 {
		add("runAsGroup")
	}
	if nonRoot != nil && *nonRoot {
		add("runAsNonRoot")
	}
	if seccomp != nil && seccomp.Type != corev1.SeccompProfileTypeUnconfined {
		add("seccompProfile")
	}
	if apparmor != nil && apparmor.Type != corev1.AppArmorProfileTypeUnconfined {
		add("appArmorProfile")
	}
	if selinux != nil {
		add("seLinuxOptions")
	}
}

// warnIgnoredSecurity says, once per pod, what of its securityContext the node
// ignores: a pod that asked to run as non-root must not believe it does.
func (w *podWorker) warnIgnoredSecurity() {
	fields := ignoredSecurity(w.snapshot())
	if len(fields) == 0 {
		return
	}
	w.event(corev1.EventTypeWarning, "SecurityContextIgnored",
		"the outpost process node runs containers as root with the host's files and does not enforce: "+strings.Join(fields, ", "))
}
