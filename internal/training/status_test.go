package training

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/api/training/v1alpha1"
)

var (
	t0  = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	now = t0.Add(time.Hour)
)

type podOpt func(*corev1.Pod)

func phase(p corev1.PodPhase) podOpt { return func(pod *corev1.Pod) { pod.Status.Phase = p } }

func jobRunning(at time.Time) podOpt {
	return func(pod *corev1.Pod) {
		pod.Status.Phase = corev1.PodRunning
		pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: JobName, State: corev1.ContainerState{
			Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(at)}}}}
	}
}

func jobExited(code int32, reason, msg string, end time.Time) podOpt {
	return func(pod *corev1.Pod) {
		pod.Status.Phase = corev1.PodSucceeded
		if code != 0 {
			pod.Status.Phase = corev1.PodFailed
		}
		pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: JobName, State: corev1.ContainerState{
			Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason, Message: msg,
				StartedAt: metav1.NewTime(t0), FinishedAt: metav1.NewTime(end)}}}}
	}
}

func waitingOn(container, reason, msg string) podOpt {
	return func(pod *corev1.Pod) {
		pod.Status.Phase = corev1.PodPending
		pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: container, State: corev1.ContainerState{
			Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}}}
	}
}

func deleting(pod *corev1.Pod) { pod.DeletionTimestamp = new(metav1.NewTime(now)) }

func jobPod(job *v1alpha1.TrainingJob, i int, opts ...podOpt) *corev1.Pod {
	plan, _, err := prepare(job, "outpost", nil)
	if err != nil {
		panic(err)
	}
	p := buildPod(job, i, "n1", *plan)
	p.Status.Phase = corev1.PodPending
	for _, o := range opts {
		o(p)
	}
	return p
}

func TestPodStatus(t *testing.T) {
	two := func(j *v1alpha1.TrainingJob) { j.Spec.InstanceCount = 2 }
	timeout := func(j *v1alpha1.TrainingJob) { j.Spec.TimeoutSeconds = 30 }
	seen := func(phases ...corev1.PodPhase) *v1alpha1.TrainingJobStatus {
		st := &v1alpha1.TrainingJobStatus{Phase: api.ClusterJobRunning}
		for i, p := range phases {
			st.Instances = append(st.Instances, v1alpha1.InstanceStatus{Index: int32(i), Pod: PodName("j", i), Node: "n1", Phase: string(p)})
		}
		return st
	}
	for _, c := range []struct {
		name    string
		mod     func(*v1alpha1.TrainingJob)
		old     *v1alpha1.TrainingJobStatus
		pods    func(j *v1alpha1.TrainingJob) []*corev1.Pod
		phase   string
		reason  string
		message string
		start   *time.Time
		end     *time.Time
	}{
		{
			name:  "not created yet",
			pods:  func(j *v1alpha1.TrainingJob) []*corev1.Pod { return []*corev1.Pod{nil} },
			phase: api.ClusterJobStarting,
		},
		{
			name:  "pending",
			pods:  func(j *v1alpha1.TrainingJob) []*corev1.Pod { return []*corev1.Pod{jobPod(j, 0)} },
			phase: api.ClusterJobStarting,
		},
		{
			name: "a bad image shows while starting",
			pods: func(j *v1alpha1.TrainingJob) []*corev1.Pod {
				return []*corev1.Pod{jobPod(j, 0, waitingOn(JobName, "ImagePullBackOff", `Back-off pulling image "nope"`))}
			},
			phase: api.ClusterJobStarting, reason: "ImagePullBackOff", message: `Back-off pulling image "nope"`,
		},
		{
			name: "one running, one pending",
			mod:  two,
			pods: func(j *v1alpha1.TrainingJob) []*corev1.Pod {
				return []*corev1.Pod{jobPod(j, 0, jobRunning(t0)), jobPod(j, 1)}
			},
			phase: api.ClusterJobStarting, start: &t0,
		},
		{
			name: "all running",
			mod:  two,
			pods: func(j *v1alpha1.TrainingJob) []*corev1.Pod {
				return []*corev1.Pod{jobPod(j, 0, jobRunning(t0.Add(time.Second))), jobPod(j, 1, jobRunning(t0))}
			},
			phase: api.ClusterJobRunning, start: &t0,
		},
		{
			name: "one done, one running: still running",
			mod:  two,
			pods: func(j *v1alpha1.TrainingJob) []*corev1.Pod {
				return []*corev1.Pod{jobPod(j, 0, jobExited(0, "Completed", "", t0)), jobPod(j, 1, jobRunning(t0))}
			},
			phase: api.ClusterJobRunning, start: &t0,
		},
		{
			name: "all succeeded",
			mod:  two,
			pods: func(j *v1alpha1.TrainingJob) []*corev1.Pod {
				return []*corev1.Pod{jobPod(j, 0, jobExited(0, "Completed", "", t0.Add(time.Minute))), jobPod(j, 1, jobExited(0, "Completed", "", t0.Add(2*time.Minute)))}
			},
			phase: api.ClusterJobSucceeded, start: &t0, end: new(t0.Add(2 * time.Minute)),
		},
		{
			name: "exit code with the wrapper's message",
			pods: func(j *v1alpha1.TrainingJob) []*corev1.Pod {
				return []*corev1.Pod{jobPod(j, 0, jobExited(2, "Error", "exit code 2: Traceback ...\nValueError: x\n", t0))}
			},
			phase: api.ClusterJobFailed, reason: ReasonError, message: "exit code 2: Traceback ...\nValueError: x", start: &t0, end: &t0,
		},
		{
			name: "exit code without a message",
			pods: func(j *v1alpha1.TrainingJob) []*corev1.Pod {
				return []*corev1.Pod{jobPod(j, 0, jobExited(137, "Error", "", t0))}
			},
			phase: api.ClusterJobFailed, reason: ReasonError, message: "exit code 137",
		},
		{
			name: "instance named when there are several",
			mod:  two,
			pods: func(j *v1alpha1.TrainingJob) []*corev1.Pod {
				return []*corev1.Pod{jobPod(j, 0, jobRunning(t0)), jobPod(j, 1, jobExited(1, "Error", "exit code 1: boom", t0))}
			},
			phase: api.ClusterJobFailed, reason: ReasonError, message: "instance 1: exit code 1: boom",
		},
		{
			name: "OOMKilled",
			pods: func(j *v1alpha1.TrainingJob) []*corev1.Pod {
				return []*corev1.Pod{jobPod(j, 0, jobExited(137, "OOMKilled", "", t0))}
			},
			phase: api.ClusterJobFailed, reason: ReasonOOMKilled, message: "OOMKilled: instance 0 exceeded its memory limit 2Gi",
		},
		{
			name: "timeout",
			mod:  timeout,
			pods: func(j *v1alpha1.TrainingJob) []*corev1.Pod {
				return []*corev1.Pod{jobPod(j, 0, func(p *corev1.Pod) {
					p.Status.Phase, p.Status.Reason, p.Status.Message = corev1.PodFailed, "DeadlineExceeded", "Pod was active on the node longer than the specified deadline"
				})}
			},
			phase: api.ClusterJobFailed, reason: ReasonDeadlineExceeded, message: "timed out after limits.timeout=30 s",
		},
		{
			name: "the install init container failed",
			pods: func(j *v1alpha1.TrainingJob) []*corev1.Pod {
				return []*corev1.Pod{jobPod(j, 0, func(p *corev1.Pod) {
					p.Status.Phase = corev1.PodFailed
					p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: InstallName, State: corev1.ContainerState{
						Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Message: "unknown command \"job\""}}}}
				})}
			},
			phase: api.ClusterJobFailed, reason: ReasonError, message: `installing the job's wrapper failed: unknown command "job"`,
		},
		{
			name: "refused by the kubelet",
			pods: func(j *v1alpha1.TrainingJob) []*corev1.Pod {
				return []*corev1.Pod{jobPod(j, 0, func(p *corev1.Pod) {
					p.Status.Phase, p.Status.Reason, p.Status.Message = corev1.PodFailed, "OutOfcpu", "Node didn't have enough resource: cpu"
				})}
			},
			phase: api.ClusterJobFailed, reason: "OutOfcpu", message: "Node didn't have enough resource: cpu",
		},
		{
			name:  "a seen pod gone: deleted under the job",
			mod:   two,
			old:   seen(corev1.PodRunning, corev1.PodRunning),
			pods:  func(j *v1alpha1.TrainingJob) []*corev1.Pod { return []*corev1.Pod{jobPod(j, 0, jobRunning(t0)), nil} },
			phase: api.ClusterJobFailed, reason: ReasonPodDeleted, message: "pod j-1 of instance 1 was deleted while the job ran",
		},
		{
			name: "a pod being deleted by someone else",
			pods: func(j *v1alpha1.TrainingJob) []*corev1.Pod {
				return []*corev1.Pod{jobPod(j, 0, jobRunning(t0), deleting)}
			},
			phase: api.ClusterJobFailed, reason: ReasonPodDeleted,
		},
		{
			name: "a succeeded pod gone does no harm",
			mod:  two,
			old:  seen(corev1.PodSucceeded, corev1.PodRunning),
			pods: func(j *v1alpha1.TrainingJob) []*corev1.Pod {
				return []*corev1.Pod{nil, jobPod(j, 1, jobExited(0, "Completed", "", t0))}
			},
			phase: api.ClusterJobSucceeded,
		},
		{
			name: "the lowest failed instance speaks",
			mod:  func(j *v1alpha1.TrainingJob) { j.Spec.InstanceCount = 3 },
			pods: func(j *v1alpha1.TrainingJob) []*corev1.Pod {
				return []*corev1.Pod{jobPod(j, 0, jobRunning(t0)), jobPod(j, 1, jobExited(3, "Error", "", t0)), jobPod(j, 2, jobExited(4, "Error", "", t0))}
			},
			phase: api.ClusterJobFailed, reason: ReasonError, message: "instance 1: exit code 3",
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			mods := []func(*v1alpha1.TrainingJob){}
			if c.mod != nil {
				mods = append(mods, c.mod)
			}
			job := testJob("j", mods...)
			old := c.old
			if old == nil {
				old = &v1alpha1.TrainingJobStatus{Phase: api.ClusterJobStarting}
			}
			pods := c.pods(job)
			st := podStatus(job, old, pods, now)
			if st.Phase != c.phase || st.Reason != c.reason || (c.message != "" && st.Message != c.message) {
				t.Errorf("status %s %q %q, want %s %q %q", st.Phase, st.Reason, st.Message, c.phase, c.reason, c.message)
			}
			if c.start != nil && (st.StartTime == nil || !st.StartTime.Time.Equal(*c.start)) {
				t.Errorf("startTime = %v, want %v", st.StartTime, *c.start)
			}
			if terminal(st.Phase) != (st.CompletionTime != nil) {
				t.Errorf("completionTime = %v in phase %s", st.CompletionTime, st.Phase)
			}
			if c.end != nil && !st.CompletionTime.Time.Equal(*c.end) {
				t.Errorf("completionTime = %v, want %v", st.CompletionTime, *c.end)
			}
			if len(st.Instances) != len(pods) || st.ObservedGeneration != job.Generation {
				t.Errorf("instances %+v, observedGeneration %d", st.Instances, st.ObservedGeneration)
			}
			for i, p := range pods {
				in := st.Instances[i]
				if in.Index != int32(i) || in.Pod != PodName("j", i) {
					t.Errorf("instance %d = %+v", i, in)
				}
				if p != nil && (in.Phase != string(p.Status.Phase) || in.Node != "n1") {
					t.Errorf("instance %d = %+v, pod phase %s", i, in, p.Status.Phase)
				}
			}
		})
	}
}

// A status derived twice from the same pods is the same, so that the
// operator writes it once.
func TestPodStatusStable(t *testing.T) {
	job := testJob("j")
	pods := []*corev1.Pod{jobPod(job, 0, jobRunning(t0))}
	first := podStatus(job, &job.Status, pods, now)
	second := podStatus(job, &first, pods, now.Add(time.Minute))
	if !first.StartTime.Equal(second.StartTime) || first.Phase != second.Phase {
		t.Errorf("%+v then %+v", first, second)
	}
}

func TestInstanceExitCode(t *testing.T) {
	job := testJob("j")
	st := podStatus(job, &job.Status, []*corev1.Pod{jobPod(job, 0, jobExited(3, "Error", "", t0))}, now)
	in := st.Instances[0]
	if in.ExitCode == nil || *in.ExitCode != 3 || in.Reason != "Error" || in.Phase != "Failed" {
		t.Errorf("instance = %+v", in)
	}
}
