package jobspec

import (
	"crypto/rand"
	"strings"

	"outpost.dev/outpost/api"
)

// Types and modes Azure ML fills in.
const (
	TypeCommand   = "command"
	TypeURIFolder = "uri_folder"
	TypeURIFile   = "uri_file"
	TypeMLTable   = "mltable"
	ModeROMount   = "ro_mount"
	ModeDownload  = "download"
	ModeRWMount   = "rw_mount"
	ModeUpload    = "upload"
)

// Default fills in what Azure ML fills in when a document leaves it out,
// and writes distribution.type in lower case (PyTorch -> pytorch), so that
// what is stored and shown is what runs.
func Default(j *api.JobSpec) {
	if j.Type == "" {
		j.Type = TypeCommand
	}
	if j.Name == "" {
		j.Name = GenerateName()
	}
	for name, out := range j.Outputs {
		if out == nil {
			out = &api.Output{}
			j.Outputs[name] = out
		}
		if out.Type == "" {
			out.Type = TypeURIFolder
		}
		if out.Mode == "" {
			out.Mode = ModeRWMount
		}
	}
	for _, in := range j.Inputs {
		if in == nil || in.Literal() {
			continue
		}
		if in.Type == "" {
			in.Type = TypeURIFolder
		}
		if in.Mode == "" {
			in.Mode = ModeROMount
		}
	}
	if j.Resources == nil {
		j.Resources = &api.JobResources{}
	}
	if j.Resources.InstanceCount == 0 {
		j.Resources.InstanceCount = 1
	}
	if d := j.Distribution; d != nil {
		d.Type = strings.ToLower(d.Type)
		switch d.Type {
		case "pytorch":
			if d.ProcessCountPerInstance == 0 {
				d.ProcessCountPerInstance = 1
			}
		case "tensorflow":
			if d.WorkerCount == 0 {
				// Azure ML's default is instance_count; the parameter
				// servers take instances of their own here.
				d.WorkerCount = max(j.Resources.InstanceCount-max(d.ParameterServerCount, 0), 0)
			}
		}
	}
}

// Words of generated names; what matters is that they are short, friendly
// and mean nothing.
var (
	adjectives = []string{
		"amber", "bold", "brave", "bright", "busy", "calm", "careful", "cheerful", "clever", "cool",
		"crisp", "curious", "dapper", "eager", "epic", "fancy", "festive", "frank", "gentle", "happy",
		"honest", "humble", "jolly", "keen", "kind", "lively", "loyal", "lucky", "mellow", "merry",
		"modest", "neat", "nice", "nifty", "patient", "plucky", "polite", "proud", "quick", "quiet",
		"quirky", "sharp", "shiny", "silly", "sleepy", "smart", "sunny", "swift", "tender", "tidy",
		"upbeat", "vivid", "warm", "wise", "witty", "zealous",
	}
	nouns = []string{
		"apple", "arch", "bag", "basket", "bean", "bell", "boat", "book", "brush", "button",
		"cactus", "camera", "candle", "carrot", "cloud", "coat", "comet", "cup", "drum", "feather",
		"fig", "flag", "garden", "glove", "hat", "helmet", "island", "jelly", "kettle", "kite",
		"lamp", "leaf", "lemon", "lime", "map", "melon", "mirror", "moon", "night", "onion",
		"orange", "owl", "pan", "pear", "pencil", "pepper", "piano", "pillow", "plum", "pot",
		"river", "rocket", "roof", "rose", "seed", "shoe", "spoon", "star", "stone", "sun",
		"table", "tiger", "tomato", "tree", "tulip", "vase", "wall", "whale", "yacht", "zebra",
	}
)

const nameAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

// GenerateName makes a job name the way Azure ML does when a document has
// none: "<adjective>_<noun>_<10 lowercase letters and digits>", e.g.
// "quirky_hat_7ql5cqq9ff".
func GenerateName() string {
	return pick(adjectives) + "_" + pick(nouns) + "_" + randomString(10)
}

func pick(words []string) string { return words[randomIndex(len(words))] }

func randomString(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = nameAlphabet[randomIndex(len(nameAlphabet))]
	}
	return string(b)
}

// randomIndex is uniform in [0, n) for n <= 256: bytes at or above the
// largest multiple of n are drawn again rather than folded, which would
// favour the first indexes.
func randomIndex(n int) int {
	limit := 256 - 256%n
	var b [1]byte
	for {
		// crypto/rand.Read never fails (it panics if the system's source
		// cannot be read).
		_, _ = rand.Read(b[:])
		if int(b[0]) < limit {
			return int(b[0]) % n
		}
	}
}
