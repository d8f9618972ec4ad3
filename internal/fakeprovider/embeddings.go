package fakeprovider

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"net/http"
)

// EmbeddingDims is the length of the fake's embedding vectors when the request sets no
// dimensions.
const EmbeddingDims = 8

// maxEmbeddingDims bounds the dimensions parameter (text-embedding-3-large's size).
const maxEmbeddingDims = 3072

type embeddingsRequest struct {
	Model          string          `json:"model"`
	Input          json.RawMessage `json:"input"`
	EncodingFormat string          `json:"encoding_format"`
	Dimensions     *int            `json:"dimensions"`
}

var errEmbeddingInput = errors.New("'input' must be a non-empty string, array of strings, array of tokens or array of token arrays")

// embeddingInputs splits an embeddings input into one key per vector: a string, an array
// of strings, an array of tokens (one input) or an array of token arrays. A key is the
// text, or the compacted JSON of a token array, with a prefix telling them apart.
func embeddingInputs(raw json.RawMessage) ([]string, error) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if s == "" {
			return nil, errEmbeddingInput
		}
		return []string{"s:" + s}, nil
	}
	var arr []json.RawMessage
	if json.Unmarshal(raw, &arr) != nil || len(arr) == 0 {
		return nil, errEmbeddingInput
	}
	tokenKey := func(raw json.RawMessage) (string, bool) {
		var toks []int64
		if json.Unmarshal(raw, &toks) != nil || len(toks) == 0 {
			return "", false
		}
		b, _ := json.Marshal(toks)
		return "t:" + string(b), true
	}
	var first any
	_ = json.Unmarshal(arr[0], &first)
	if _, isNum := first.(float64); isNum {
		k, ok := tokenKey(raw)
		if !ok {
			return nil, errEmbeddingInput
		}
		return []string{k}, nil
	}
	keys := make([]string, 0, len(arr))
	for _, el := range arr {
		if json.Unmarshal(el, &s) == nil {
			if s == "" {
				return nil, errEmbeddingInput
			}
			keys = append(keys, "s:"+s)
			continue
		}
		k, ok := tokenKey(el)
		if !ok {
			return nil, errEmbeddingInput
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// embed returns the deterministic unit-length vector of an input key: dims float32s
// drawn from a SHA-256 chain of the key.
func embed(key string, dims int) []float32 {
	v := make([]float32, dims)
	block := sha256.Sum256([]byte(key))
	var norm float64
	for i := range v {
		if i > 0 && i%8 == 0 {
			block = sha256.Sum256(block[:])
		}
		u := binary.LittleEndian.Uint32(block[(i%8)*4:])
		f := float64(u)/float64(math.MaxUint32)*2 - 1
		v[i] = float32(f)
		norm += f * f
	}
	if norm = math.Sqrt(norm); norm > 0 {
		for i := range v {
			v[i] = float32(float64(v[i]) / norm)
		}
	}
	return v
}

// base64Floats is what encoding_format "base64" sends: little-endian float32 bytes.
func base64Floats(v []float32) string {
	b := make([]byte, 0, 4*len(v))
	for _, f := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(f))
	}
	return base64.StdEncoding.EncodeToString(b)
}

func (s *Server) embeddings(w http.ResponseWriter, _ *http.Request, body []byte, sc Script) {
	var req embeddingsRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, openAI, http.StatusBadRequest, "We could not parse the JSON body of your request.")
		return
	}
	if req.Model == "" {
		writeError(w, openAI, http.StatusBadRequest, "Missing required parameter: 'model'.")
		return
	}
	keys, err := embeddingInputs(req.Input)
	if err != nil {
		writeError(w, openAI, http.StatusBadRequest, err.Error())
		return
	}
	dims := EmbeddingDims
	if req.Dimensions != nil {
		dims = *req.Dimensions
		if dims < 1 || dims > maxEmbeddingDims {
			writeError(w, openAI, http.StatusBadRequest, "Invalid value for 'dimensions'.")
			return
		}
	}
	if req.EncodingFormat != "" && req.EncodingFormat != "float" && req.EncodingFormat != "base64" {
		writeError(w, openAI, http.StatusBadRequest, "Invalid value for 'encoding_format': must be 'float' or 'base64'.")
		return
	}
	data := make([]any, 0, len(keys))
	for i, k := range keys {
		v := embed(k, dims)
		var e any = v
		if req.EncodingFormat == "base64" {
			e = base64Floats(v)
		}
		data = append(data, obj{"object", "embedding", "index", i, "embedding", e})
	}
	tokens := max(1, (len(body)+3)/4)
	if sc.Usage != nil {
		tokens = sc.Usage.InputTokens
	}
	w.Header().Set("x-request-id", newID("req_"))
	w.Header().Set("openai-processing-ms", "1")
	writeAnswer(w, sc, obj{"object", "list", "data", data, "model", req.Model,
		"usage", obj{"prompt_tokens", tokens, "total_tokens", tokens}})
}
