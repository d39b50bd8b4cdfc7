package extension

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

type kv = map[string]string

func TestParseValid(t *testing.T) {
	tc := newCert(t, certOpts{names: []string{"scoring.example.com", "*.apps.example.com"}})
	expired := newCert(t, certOpts{notBefore: time.Now().Add(-48 * time.Hour), notAfter: time.Now().Add(-24 * time.Hour)})
	pems := kv{"sslCertPemFile": string(tc.certPEM), "sslKeyPemFile": string(tc.keyPEM)}
	// defaults is what a user gets for the settings they leave out.
	defaults := Settings{
		InferenceRouterServiceType: LoadBalancer,
		InferenceRouterHA:          true,
	}
	tests := []struct {
		name      string
		config    kv
		protected kv
		want      func(s *Settings) // edits defaults into the expected Settings
		warnings  []string          // substrings, one per expected warning, in order
	}{
		{
			name:   "seed: training only",
			config: kv{"enableTraining": "True"},
			want:   func(s *Settings) { s.EnableTraining = true },
		},
		{
			name:   "seed: inference over HTTP",
			config: kv{"enableInference": "True", "allowInsecureConnections": "True"},
			want:   func(s *Settings) { s.EnableInference, s.AllowInsecureConnections = true, true },
			warnings: []string{
				"allowInsecureConnections=True: the inference router serves plain HTTP",
			},
		},
		{
			name:      "seed: inference over HTTPS with PEM files",
			config:    kv{"enableInference": "True"},
			protected: pems,
			want: func(s *Settings) {
				s.EnableInference = true
				s.SSLCertPEM, s.SSLKeyPEM = tc.certPEM, tc.keyPEM
			},
		},
		{
			name:      "seed: training and inference",
			config:    kv{"enableTraining": "True", "enableInference": "True"},
			protected: pems,
			want: func(s *Settings) {
				s.EnableTraining, s.EnableInference = true, true
				s.SSLCertPEM, s.SSLKeyPEM = tc.certPEM, tc.keyPEM
			},
		},
		{
			name:   "NodePort, input case-insensitive",
			config: kv{"enableInference": "true", "inferenceRouterServiceType": "nodeport", "allowInsecureConnections": "TRUE"},
			want: func(s *Settings) {
				s.EnableInference, s.AllowInsecureConnections = true, true
				s.InferenceRouterServiceType = NodePort
			},
			warnings: []string{"plain HTTP"},
		},
		{
			name:   "ClusterIP",
			config: kv{"enableInference": "True", "inferenceRouterServiceType": "ClusterIP", "allowInsecureConnections": "True"},
			want: func(s *Settings) {
				s.EnableInference, s.AllowInsecureConnections = true, true
				s.InferenceRouterServiceType = ClusterIP
			},
			warnings: []string{"plain HTTP"},
		},
		{
			name:      "seed: legacy privateEndpointNodeport maps onto NodePort",
			config:    kv{"enableInference": "True", "privateEndpointNodeport": "True"},
			protected: pems,
			want: func(s *Settings) {
				s.EnableInference = true
				s.InferenceRouterServiceType = NodePort
				s.SSLCertPEM, s.SSLKeyPEM = tc.certPEM, tc.keyPEM
			},
			warnings: []string{"privateEndpointNodeport is deprecated: use inferenceRouterServiceType=NodePort instead"},
		},
		{
			name:   "seed: legacy privateEndpointILB maps onto an internal load balancer",
			config: kv{"enableInference": "True", "privateEndpointILB": "True", "allowInsecureConnections": "True"},
			want: func(s *Settings) {
				s.EnableInference, s.AllowInsecureConnections = true, true
				s.InternalLoadBalancerProvider = "azure"
			},
			warnings: []string{
				"privateEndpointILB is deprecated: use inferenceRouterServiceType=LoadBalancer with internalLoadBalancerProvider=azure instead",
				"internalLoadBalancerProvider=azure takes effect only where the cluster's cloud provider is Azure",
				"plain HTTP",
			},
		},
		{
			name:   "legacy key agreeing with its successor",
			config: kv{"enableInference": "True", "privateEndpointILB": "True", "internalLoadBalancerProvider": "Azure", "inferenceRouterServiceType": "LoadBalancer", "sslSecret": "router-tls"},
			want: func(s *Settings) {
				s.EnableInference = true
				s.InternalLoadBalancerProvider = "azure"
				s.SSLSecret = "router-tls"
			},
			warnings: []string{"privateEndpointILB is deprecated", "only where the cluster's cloud provider is Azure"},
		},
		{
			name:   "legacy False asks for nothing",
			config: kv{"enableInference": "True", "privateEndpointNodeport": "False", "inferenceRouterServiceType": "ClusterIP", "sslSecret": "router-tls"},
			want: func(s *Settings) {
				s.EnableInference = true
				s.InferenceRouterServiceType = ClusterIP
				s.SSLSecret = "router-tls"
			},
			warnings: []string{"privateEndpointNodeport is deprecated"},
		},
		{
			name:   "legacy inferenceLoadBalancerHA maps onto inferenceRouterHA",
			config: kv{"enableInference": "True", "inferenceLoadBalancerHA": "False", "sslSecret": "router-tls"},
			want: func(s *Settings) {
				s.EnableInference = true
				s.InferenceRouterHA = false
				s.SSLSecret = "router-tls"
			},
			warnings: []string{"inferenceLoadBalancerHA is deprecated: use inferenceRouterHA instead"},
		},
		{
			name:   "sslSecret with a wildcard sslCname",
			config: kv{"enableInference": "True", "sslSecret": "router-tls", "sslCname": "*.Apps.Example.com", "inferenceRouterHA": "false"},
			want: func(s *Settings) {
				s.EnableInference = true
				s.SSLSecret, s.SSLCname = "router-tls", "*.apps.example.com"
				s.InferenceRouterHA = false
			},
		},
		{
			name:      "sslCname covered by the certificate",
			config:    kv{"enableInference": "True", "sslCname": "scoring.example.com"},
			protected: pems,
			want: func(s *Settings) {
				s.EnableInference = true
				s.SSLCname = "scoring.example.com"
				s.SSLCertPEM, s.SSLKeyPEM = tc.certPEM, tc.keyPEM
			},
		},
		{
			name:      "sslCname not covered by the certificate warns",
			config:    kv{"enableInference": "True", "sslCname": "other.example.com"},
			protected: pems,
			want: func(s *Settings) {
				s.EnableInference = true
				s.SSLCname = "other.example.com"
				s.SSLCertPEM, s.SSLKeyPEM = tc.certPEM, tc.keyPEM
			},
			warnings: []string{"sslCname=other.example.com is not among the DNS names of the certificate in sslCertPemFile"},
		},
		{
			name:      "expired certificate is accepted with a warning",
			config:    kv{"enableInference": "True"},
			protected: kv{"sslCertPemFile": string(expired.certPEM), "sslKeyPemFile": string(expired.keyPEM)},
			want: func(s *Settings) {
				s.EnableInference = true
				s.SSLCertPEM, s.SSLKeyPEM = expired.certPEM, expired.keyPEM
			},
			warnings: []string{"sslCertPemFile: the certificate expired on " + expired.cert.NotAfter.UTC().Format("2006-01-02")},
		},
		{
			name: "node selector and component switches",
			config: kv{
				"enableTraining":                   "True",
				"nodeSelector.kubernetes.io/os":    "linux",
				"nodeSelector.accelerator":         "nvidia-a100",
				"nodeSelector.example.com/pool":    "",
				"installNvidiaDevicePlugin":        "True",
				"installPromOp":                    "true",
				"installVolcano":                   "TRUE",
				"installDcgmExporter":              "True",
				"openshift":                        "True",
				"nodeSelector.topology.kubernetes": "zone-1",
			},
			want: func(s *Settings) {
				s.EnableTraining = true
				s.NodeSelector = kv{"kubernetes.io/os": "linux", "accelerator": "nvidia-a100", "example.com/pool": "", "topology.kubernetes": "zone-1"}
				s.InstallNvidiaDevicePlugin, s.InstallPromOp, s.InstallVolcano = true, true, true
				s.InstallDcgmExporter, s.OpenShift = true, true
			},
		},
		{
			name:   "logAnalyticsWS is accepted and ignored",
			config: kv{"enableTraining": "True", "logAnalyticsWS": "True"},
			want:   func(s *Settings) { s.EnableTraining, s.LogAnalyticsWS = true, true },
			warnings: []string{
				"logAnalyticsWS has no effect in Outpost: the extension sends its logs to the workspace itself",
			},
		},
		{
			name:   "inference settings without inference",
			config: kv{"enableTraining": "True", "enableInference": "False", "inferenceRouterServiceType": "NodePort", "sslCname": "a.example.com"},
			want: func(s *Settings) {
				s.EnableTraining = true
				s.InferenceRouterServiceType = NodePort
				s.SSLCname = "a.example.com"
			},
			warnings: []string{"enableInference is not True, so these inference settings have no effect: sslCname, inferenceRouterServiceType"},
		},
		{
			name:      "any setting may be protected",
			config:    kv{"enableInference": "True"},
			protected: kv{"allowInsecureConnections": "True", "nodeSelector.pool": "gpu"},
			want: func(s *Settings) {
				s.EnableInference, s.AllowInsecureConnections = true, true
				s.NodeSelector = kv{"pool": "gpu"}
			},
			warnings: []string{"allowInsecureConnections=<redacted>: the inference router serves plain HTTP"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.config, tt.protected)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			want := defaults
			tt.want(&want)
			gotWarnings := got.Warnings
			got.Warnings = nil
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Parse =\n%+v\nwant\n%+v", got, want)
			}
			if len(gotWarnings) != len(tt.warnings) {
				t.Fatalf("warnings = %q, want %d matching %q", gotWarnings, len(tt.warnings), tt.warnings)
			}
			for i, w := range tt.warnings {
				if !strings.Contains(gotWarnings[i], w) {
					t.Errorf("warning %d = %q, want it to contain %q", i, gotWarnings[i], w)
				}
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tc := newCert(t, certOpts{})
	other := newCert(t, certOpts{})
	pems := kv{"sslCertPemFile": string(tc.certPEM), "sslKeyPemFile": string(tc.keyPEM)}
	tests := []struct {
		name      string
		config    kv
		protected kv
		want      []string // substrings the message must contain
		notWant   []string // substrings it must not: noise that follows from an error already reported
	}{
		{
			name:   "unknown key, typo",
			config: kv{"enableTrainning": "True"},
			want: []string{`unknown setting "enableTrainning" (did you mean enableTraining?)`,
				"accepted settings are: enableTraining, enableInference,", "nodeSelector.<label-key>", "logAnalyticsWS"},
			notWant: []string{"neither"},
		},
		{
			name:   "unknown key, wrong case",
			config: kv{"EnableTraining": "True"},
			want:   []string{`"EnableTraining" (did you mean enableTraining?)`},
		},
		{
			name:      "unknown key, the seed's own typo",
			config:    kv{"enableInference": "True"},
			protected: kv{"sslCertPemFile": string(tc.certPEM), "ssKeyPMFile": string(tc.keyPEM)},
			want:      []string{`"ssKeyPMFile" (did you mean sslKeyPemFile?)`},
			notWant:   []string{"given without", "needs TLS"},
		},
		{
			name:   "unknown keys, several, one without a suggestion",
			config: kv{"enableTraining": "True", "nodeselector.pool": "gpu", "relayserver.enabled": "false", "nodeSelector": "x"},
			want: []string{`unknown settings "nodeSelector" (did you mean nodeSelector.<label-key>?), ` +
				`"nodeselector.pool" (did you mean nodeSelector.pool?), "relayserver.enabled";`},
		},
		{
			name:   "boolean",
			config: kv{"enableTraining": "yes"},
			want:   []string{`enableTraining: invalid value "yes": must be True or False`},
			// An invalid value is not also reported as "not enabled".
			notWant: []string{"neither"},
		},
		{
			name:   "boolean, the seed's Ture",
			config: kv{"enableInference": "True", "privateEndpointNodeport": "True", "allowInsecureConnections": "Ture"},
			want:   []string{`allowInsecureConnections: invalid value "Ture": must be True or False (did you mean True?)`},
			// Nor is an invalid allowInsecureConnections also "no TLS and no opt-out".
			notWant: []string{"needs TLS"},
		},
		{
			name:   "neither training nor inference",
			config: kv{"enableTraining": "False", "installVolcano": "True"},
			want:   []string{"neither enableTraining nor enableInference is True", "enableTraining=True", "enableInference=True"},
		},
		{
			name: "no settings at all",
			want: []string{"neither enableTraining nor enableInference is True"},
		},
		{
			name:   "inference without TLS and without opt-out",
			config: kv{"enableInference": "True"},
			want: []string{"enableInference=True needs TLS",
				"--config-protected sslCertPemFile=<cert.pem> sslKeyPemFile=<key.pem>",
				"sslSecret=<name>", "namespace azureml", "for plain HTTP set allowInsecureConnections=True"},
		},
		{
			name:   "inference with allowInsecureConnections=False",
			config: kv{"enableInference": "True", "allowInsecureConnections": "False"},
			want:   []string{"enableInference=True needs TLS"},
		},
		{
			name:      "certificate without key",
			config:    kv{"enableInference": "True"},
			protected: kv{"sslCertPemFile": string(tc.certPEM)},
			want:      []string{"sslCertPemFile is given without sslKeyPemFile: HTTPS needs the certificate and its private key"},
			notWant:   []string{"needs TLS"},
		},
		{
			name:      "key without certificate",
			config:    kv{"enableInference": "True"},
			protected: kv{"sslKeyPemFile": string(tc.keyPEM)},
			want:      []string{"sslKeyPemFile is given without sslCertPemFile"},
		},
		{
			name:      "sslSecret and PEM files",
			config:    kv{"enableInference": "True", "sslSecret": "router-tls"},
			protected: pems,
			want:      []string{"sslSecret and sslCertPemFile/sslKeyPemFile are two ways", "choose one"},
		},
		{
			name:   "allowInsecureConnections and TLS",
			config: kv{"enableInference": "True", "sslSecret": "router-tls", "allowInsecureConnections": "True"},
			want:   []string{"allowInsecureConnections=True and the TLS settings", "contradict"},
		},
		{
			name:      "same key in config and protected",
			config:    kv{"enableTraining": "True"},
			protected: kv{"enableTraining": "True"},
			want:      []string{"enableTraining is given both with --config and with --config-protected: give it once"},
			notWant:   []string{"neither"},
		},
		{
			name:   "PEM files as plain settings",
			config: kv{"enableInference": "True", "sslCertPemFile": "/tmp/cert.pem", "sslKeyPemFile": "/tmp/key.pem"},
			want: []string{"sslCertPemFile must be given with --config-protected, not --config",
				"sslKeyPemFile must be given with --config-protected, not --config"},
			notWant: []string{"/tmp/key.pem", "no certificate found", "needs TLS"},
		},
		{
			name:      "certificate and key that do not match",
			config:    kv{"enableInference": "True"},
			protected: kv{"sslCertPemFile": string(tc.certPEM), "sslKeyPemFile": string(other.keyPEM)},
			want:      []string{"sslCertPemFile and sslKeyPemFile do not belong together"},
		},
		{
			name:      "encrypted key",
			config:    kv{"enableInference": "True"},
			protected: kv{"sslCertPemFile": string(tc.certPEM), "sslKeyPemFile": "-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00112233445566778899AABBCCDDEEFF\n\nAAAA\n-----END EC PRIVATE KEY-----\n"},
			want:      []string{"sslKeyPemFile: the private key is encrypted with a passphrase"},
		},
		{
			name:   "service type",
			config: kv{"enableInference": "True", "allowInsecureConnections": "True", "inferenceRouterServiceType": "Ingress"},
			want:   []string{`inferenceRouterServiceType: invalid value "Ingress": must be LoadBalancer, NodePort or ClusterIP`},
		},
		{
			name:   "legacy NodePort against its successor",
			config: kv{"enableInference": "True", "allowInsecureConnections": "True", "privateEndpointNodeport": "True", "inferenceRouterServiceType": "LoadBalancer"},
			want: []string{"privateEndpointNodeport=True conflicts with inferenceRouterServiceType=LoadBalancer",
				"keep only inferenceRouterServiceType"},
		},
		{
			name:   "NodePort with internalLoadBalancerProvider",
			config: kv{"enableInference": "True", "allowInsecureConnections": "True", "inferenceRouterServiceType": "NodePort", "internalLoadBalancerProvider": "azure"},
			want: []string{"an internal load balancer (internalLoadBalancerProvider=azure) needs inferenceRouterServiceType=LoadBalancer, " +
				"but inferenceRouterServiceType=NodePort asks for NodePort"},
		},
		{
			name:   "NodePort with privateEndpointILB",
			config: kv{"enableInference": "True", "allowInsecureConnections": "True", "inferenceRouterServiceType": "NodePort", "privateEndpointILB": "True"},
			want:   []string{"an internal load balancer (privateEndpointILB=True) needs inferenceRouterServiceType=LoadBalancer"},
		},
		{
			name:   "both legacy endpoint keys",
			config: kv{"enableInference": "True", "allowInsecureConnections": "True", "privateEndpointNodeport": "True", "privateEndpointILB": "True"},
			want: []string{"an internal load balancer (privateEndpointILB=True) needs inferenceRouterServiceType=LoadBalancer, " +
				"but privateEndpointNodeport=True asks for NodePort"},
		},
		{
			name:   "ClusterIP with an internal load balancer",
			config: kv{"enableInference": "True", "allowInsecureConnections": "True", "inferenceRouterServiceType": "ClusterIP", "internalLoadBalancerProvider": "azure"},
			want:   []string{"needs inferenceRouterServiceType=LoadBalancer, but inferenceRouterServiceType=ClusterIP asks for ClusterIP"},
		},
		{
			name:   "internal load balancer provider",
			config: kv{"enableInference": "True", "allowInsecureConnections": "True", "internalLoadBalancerProvider": "aws"},
			want:   []string{`internalLoadBalancerProvider: invalid value "aws": the only provider is azure`},
		},
		{
			name:   "legacy HA against its successor",
			config: kv{"enableInference": "True", "allowInsecureConnections": "True", "inferenceLoadBalancerHA": "False", "inferenceRouterHA": "True"},
			want:   []string{"inferenceLoadBalancerHA=False and inferenceRouterHA=True disagree", "keep only inferenceRouterHA"},
		},
		{
			name: "node selector key and value",
			config: kv{"enableTraining": "True", "nodeSelector.-pool": "gpu", "nodeSelector.zone": "eu west",
				"nodeSelector.": "x", "nodeSelector.a/b/c": "x"},
			want: []string{`nodeSelector.-pool: "-pool" is not a valid label key`,
				`nodeSelector.zone: invalid value "eu west": not a valid label value`,
				`"nodeSelector." needs a label key after the dot`,
				`nodeSelector.a/b/c: "a/b/c" is not a valid label key`},
		},
		{
			name:   "sslCname",
			config: kv{"enableInference": "True", "sslSecret": "router-tls", "sslCname": "scoring_host.example.com"},
			want:   []string{`sslCname: invalid value "scoring_host.example.com": not a DNS name (a leading *. wildcard is allowed)`},
		},
		{
			name:   "sslCname with a misplaced wildcard",
			config: kv{"enableInference": "True", "sslSecret": "router-tls", "sslCname": "scoring.*.example.com"},
			want:   []string{`sslCname: invalid value "scoring.*.example.com": not a DNS name`},
		},
		{
			name:   "sslSecret",
			config: kv{"enableInference": "True", "sslSecret": "Router_TLS"},
			want:   []string{`sslSecret: invalid value "Router_TLS": not a valid Kubernetes secret name`},
			// An invalid secret name is still an attempt at TLS.
			notWant: []string{"needs TLS"},
		},
		{
			name: "every error at once",
			config: kv{"enableTraining": "yes", "enableInference": "True", "inferenceRouterServiceType": "Ingress",
				"foo": "bar", "nodeSelector.zone": "eu west"},
			protected: kv{"sslCertPemFile": string(tc.certPEM)},
			want: []string{`unknown setting "foo"`, `enableTraining: invalid value "yes"`,
				`inferenceRouterServiceType: invalid value "Ingress"`, "sslCertPemFile is given without sslKeyPemFile",
				`nodeSelector.zone: invalid value "eu west"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.config, tt.protected)
			if err == nil {
				t.Fatalf("Parse succeeded with %+v, want an error", got)
			}
			if !reflect.DeepEqual(got, Settings{}) {
				t.Errorf("Parse returned Settings %+v along with the error, want none", got)
			}
			msg := err.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error:\n%s\ndoes not contain %q", msg, w)
				}
			}
			for _, nw := range tt.notWant {
				if strings.Contains(msg, nw) {
					t.Errorf("error:\n%s\ncontains %q", msg, nw)
				}
			}
			assertNoPEMBody(t, msg, []byte(tt.protected["sslCertPemFile"]), []byte(tt.protected["sslKeyPemFile"]))
		})
	}
}

// TestProtectedValuesNeverShown gives every setting an invalid or conflicting
// value through --config-protected and checks that no message repeats one.
func TestProtectedValuesNeverShown(t *testing.T) {
	const secret = "s3cr3t-VALUE"
	tc := newCert(t, certOpts{})
	other := newCert(t, certOpts{})
	cases := []struct {
		name      string
		config    kv
		protected kv
		wantErr   bool
	}{
		{
			name: "invalid values",
			protected: kv{
				"enableTraining": secret + "x", "enableInference": "Tru" + secret, "allowInsecureConnections": secret,
				"inferenceRouterServiceType": secret, "internalLoadBalancerProvider": secret,
				"inferenceRouterHA": secret, "inferenceLoadBalancerHA": secret, "privateEndpointNodeport": secret,
				"privateEndpointILB": secret, "installNvidiaDevicePlugin": secret, "installPromOp": secret,
				"installVolcano": secret, "installDcgmExporter": secret, "openshift": secret, "logAnalyticsWS": secret,
				"sslSecret": secret + "_", "sslCname": secret + "_", "nodeSelector.zone": secret + " x",
				"sslCertPemFile": "-----BEGIN CERTIFICATE-----\n" + secret + "\n-----END CERTIFICATE-----\n",
				"sslKeyPemFile":  "-----BEGIN " + secret + "-----\nAAAA\n-----END " + secret + "-----\n",
			},
			wantErr: true,
		},
		{
			name:      "mismatched PEMs",
			config:    kv{"enableInference": "True"},
			protected: kv{"sslCertPemFile": string(tc.certPEM), "sslKeyPemFile": string(other.keyPEM)},
			wantErr:   true,
		},
		{
			name:      "conflicts between protected booleans",
			config:    kv{"enableInference": "True", "inferenceRouterServiceType": "NodePort"},
			protected: kv{"inferenceLoadBalancerHA": "False", "inferenceRouterHA": "True", "privateEndpointILB": "True", "allowInsecureConnections": "True", "sslSecret": "router-tls"},
			wantErr:   true,
		},
		{
			name:      "warnings about protected values",
			config:    kv{"enableInference": "True"},
			protected: kv{"sslCname": secret + ".example.com", "sslCertPemFile": string(tc.certPEM), "sslKeyPemFile": string(tc.keyPEM)},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := Parse(c.config, c.protected)
			if (err != nil) != c.wantErr {
				t.Fatalf("Parse error = %v, want error: %v", err, c.wantErr)
			}
			var text []string
			if err != nil {
				text = append(text, err.Error())
			}
			text = append(text, s.Warnings...)
			if !c.wantErr && len(s.Warnings) == 0 {
				t.Fatal("want a warning about sslCname, got none")
			}
			all := strings.Join(text, "\n")
			t.Logf("messages:\n%s", all)
			if strings.Contains(strings.ToLower(all), strings.ToLower(secret)) {
				t.Errorf("a protected value appears in:\n%s", all)
			}
			// Protected booleans show as <redacted>, not as their value.
			for _, b := range []string{"inferenceRouterHA=True", "inferenceLoadBalancerHA=False", "privateEndpointILB=True", "allowInsecureConnections=True"} {
				if strings.Contains(all, b) {
					t.Errorf("protected setting shown with its value %q in:\n%s", b, all)
				}
			}
			assertNoPEMBody(t, all, []byte(c.protected["sslCertPemFile"]), []byte(c.protected["sslKeyPemFile"]))
		})
	}
}

func TestSettingsPrintWithoutSecrets(t *testing.T) {
	tc := newCert(t, certOpts{})
	s, err := Parse(kv{"enableInference": "True"}, kv{"sslCertPemFile": string(tc.certPEM), "sslKeyPemFile": string(tc.keyPEM)})
	if err != nil {
		t.Fatal(err)
	}
	if !s.HTTPS() {
		t.Error("HTTPS() = false with a certificate and key")
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%d"} {
		out := fmt.Sprintf(verb, s)
		assertNoPEMBody(t, out, tc.keyPEM, tc.certPEM)
		if !strings.Contains(out, RedactedValue) {
			t.Errorf("%s of Settings shows no %s: %s", verb, RedactedValue, out)
		}
	}
	// Secret is still usable as plain bytes.
	var b []byte = s.SSLKeyPEM
	if string(b) != string(tc.keyPEM) {
		t.Error("SSLKeyPEM does not hold the key")
	}
}

func TestRedacted(t *testing.T) {
	got := Redacted(
		kv{"enableInference": "True", "sslKeyPemFile": "a key given the wrong way", "sslCname": "a.example.com"},
		kv{"sslCertPemFile": "cert", "allowInsecureConnections": "True"},
	)
	want := kv{
		"enableInference":          "True",
		"sslKeyPemFile":            RedactedValue,
		"sslCname":                 "a.example.com",
		"sslCertPemFile":           RedactedValue,
		"allowInsecureConnections": RedactedValue,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Redacted = %v, want %v", got, want)
	}
	if got := Redacted(nil, nil); got == nil || len(got) != 0 {
		t.Errorf("Redacted(nil, nil) = %#v, want an empty map", got)
	}
}

func TestKeys(t *testing.T) {
	keys := Keys()
	// The keys of the seed and of DESIGN.md, which existing commands use.
	documented := []string{"enableTraining", "enableInference", "allowInsecureConnections", "sslCertPemFile",
		"sslKeyPemFile", "privateEndpointNodeport", "privateEndpointILB", "inferenceLoadBalancerHA",
		"installNvidiaDevicePlugin", "openshift", "logAnalyticsWS", "inferenceRouterServiceType",
		"internalLoadBalancerProvider", "sslSecret", "sslCname", "inferenceRouterHA", "nodeSelector.<label-key>",
		"installPromOp", "installVolcano", "installDcgmExporter"}
	var names []string
	for _, k := range keys {
		names = append(names, k.Name)
		if k.Description == "" {
			t.Errorf("%s has no description", k.Name)
		}
		if k.Protected != (k.Name == "sslCertPemFile" || k.Name == "sslKeyPemFile") {
			t.Errorf("%s: Protected = %v", k.Name, k.Protected)
		}
		if (k.Successor != "") != slices.Contains([]string{"privateEndpointNodeport", "privateEndpointILB", "inferenceLoadBalancerHA"}, k.Name) {
			t.Errorf("%s: Successor = %q", k.Name, k.Successor)
		}
	}
	slices.Sort(names)
	slices.Sort(documented)
	if !slices.Equal(names, documented) {
		t.Errorf("Keys() = %v\nwant     %v", names, documented)
	}
	// Every listed key is accepted by Parse, and its default parses too.
	for _, k := range keys {
		name := strings.Replace(k.Name, "<label-key>", "pool", 1)
		value := k.Default
		if value == "" {
			value = "a"
		}
		_, err := Parse(kv{"enableTraining": "True", name: value}, nil)
		if err != nil && strings.Contains(err.Error(), "unknown") {
			t.Errorf("%s is listed but not accepted: %v", k.Name, err)
		}
	}
}

func TestSuggest(t *testing.T) {
	for in, want := range map[string]string{
		"enableTrainning":         "enableTraining",
		"enabletraining":          "enableTraining",
		"ssKeyPMFile":             "sslKeyPemFile",
		"sslCertPemfile":          "sslCertPemFile",
		"inferenceRouterHa":       "inferenceRouterHA",
		"privateEndpointNodePort": "privateEndpointNodeport",
		"nodeSelecter.zone":       "nodeSelector.zone",
		"nodeselector":            "nodeSelector.<label-key>",
		"replicas":                "",
		"clusterPurpose":          "",
		"":                        "",
	} {
		if got := suggest(in); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
}
