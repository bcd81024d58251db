#include "codec/eval/tensor_file.h"

#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "codec/float_convert.h"

namespace kvpack {
namespace eval {
namespace {

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A minimal JSON value: enough for safetensors headers (objects, arrays, strings, numbers).
struct Json {
  enum Kind { kNull, kNumber, kString, kArray, kObject } kind = kNull;
  double number = 0;
  std::string str;
  std::vector<Json> items;
  std::map<std::string, Json> fields;
};

class JsonParser {
 public:
  explicit JsonParser(absl::string_view text) : s_(text) {}

  bool Parse(Json* out) {
    if (!Value(out, 0)) return false;
    Skip();
    return pos_ == s_.size();
  }

 private:
  void Skip() {
    while (pos_ < s_.size() && absl::ascii_isspace(static_cast<unsigned char>(s_[pos_]))) ++pos_;
  }
  bool Eat(char c) {
    Skip();
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool String(std::string* out) {
    if (!Eat('"')) return false;
    while (pos_ < s_.size() && s_[pos_] != '"') {
      if (s_[pos_] == '\\') {
        if (++pos_ >= s_.size()) return false;
        const char e = s_[pos_];
        out->push_back(e == 'n' ? '\n' : e == 't' ? '\t' : e);  // \uXXXX kept verbatim
      } else {
        out->push_back(s_[pos_]);
      }
      ++pos_;
    }
    return pos_++ < s_.size();
  }
  bool Value(Json* out, int depth) {
    if (depth > 32) return false;
    Skip();
    if (pos_ >= s_.size()) return false;
    const char c = s_[pos_];
    if (c == '{') {
      ++pos_;
      out->kind = Json::kObject;
      if (Eat('}')) return true;
      do {
        std::string key;
        Json value;
        if (!String(&key) || !Eat(':') || !Value(&value, depth + 1)) return false;
        out->fields[key] = std::move(value);
      } while (Eat(','));
      return Eat('}');
    }
    if (c == '[') {
      ++pos_;
      out->kind = Json::kArray;
      if (Eat(']')) return true;
      do {
        out->items.emplace_back();
        if (!Value(&out->items.back(), depth + 1)) return false;
      } while (Eat(','));
      return Eat(']');
    }
    if (c == '"') {
      out->kind = Json::kString;
      return String(&out->str);
    }
    const size_t start = pos_;
    while (pos_ < s_.size() && std::strchr("+-0123456789.eEtrufalsn", s_[pos_]) != nullptr) ++pos_;
    const absl::string_view tok = s_.substr(start, pos_ - start);
    if (tok == "null" || tok == "true" || tok == "false") return true;
    out->kind = Json::kNumber;
    return absl::SimpleAtod(tok, &out->number);
  }

  absl::string_view s_;
  size_t pos_ = 0;
};

absl::Status Convert(absl::string_view dtype, const uint8_t* data, uint64_t count,
                     std::vector<float>* out) {
  out->resize(count);
  for (uint64_t i = 0; i < count; ++i) {
    if (dtype == "F32") {
      std::memcpy(&(*out)[i], data + 4 * i, 4);
    } else {
      uint16_t h;
      std::memcpy(&h, data + 2 * i, 2);
      (*out)[i] = dtype == "BF16" ? BFloat16ToFloat(h) : HalfToFloat(h);
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Tensor> ReadSafetensors(const std::string& path, absl::string_view name) {
  absl::StatusOr<std::string> file = ReadWholeFile(path);
  if (!file.ok()) return file.status();
  if (file->size() < 8) return absl::DataLossError(absl::StrCat(path, ": too short"));
  uint64_t header_len;
  std::memcpy(&header_len, file->data(), 8);
  if (header_len > file->size() - 8) {
    return absl::DataLossError(absl::StrCat(path, ": header length ", header_len, " exceeds the file"));
  }
  Json root;
  if (!JsonParser(absl::string_view(*file).substr(8, header_len)).Parse(&root) ||
      root.kind != Json::kObject) {
    return absl::DataLossError(absl::StrCat(path, ": malformed safetensors JSON header"));
  }
  const Json* entry = nullptr;
  int tensors = 0;
  for (const auto& [key, value] : root.fields) {
    if (key == "__metadata__") continue;
    ++tensors;
    if (name.empty() || key == name) entry = &value;
  }
  if (name.empty() && tensors != 1) {
    return absl::NotFoundError(absl::StrCat(path, ": holds ", tensors, " tensors; name one"));
  }
  if (entry == nullptr || entry->kind != Json::kObject) {
    return absl::NotFoundError(absl::StrCat(path, ": no tensor '", name, "'"));
  }
  auto f = [&](const char* k) -> const Json* {
    auto it = entry->fields.find(k);
    return it == entry->fields.end() ? nullptr : &it->second;
  };
  const Json* dtype = f("dtype");
  const Json* shape = f("shape");
  const Json* offsets = f("data_offsets");
  if (!dtype || !shape || !offsets || dtype->kind != Json::kString ||
      shape->kind != Json::kArray || offsets->kind != Json::kArray || offsets->items.size() != 2) {
    return absl::DataLossError(absl::StrCat(path, ": tensor entry lacks dtype/shape/data_offsets"));
  }
  if (dtype->str != "BF16" && dtype->str != "F16" && dtype->str != "F32") {
    return absl::InvalidArgumentError(absl::StrCat(path, ": unsupported dtype ", dtype->str));
  }
  Tensor t;
  uint64_t count = 1;
  for (const Json& d : shape->items) {
    if (d.kind != Json::kNumber || d.number < 0 || d.number > 1e12) {
      return absl::DataLossError(absl::StrCat(path, ": bad shape"));
    }
    t.shape.push_back(static_cast<uint64_t>(d.number));
    count *= t.shape.back();
  }
  const uint64_t begin = static_cast<uint64_t>(offsets->items[0].number);
  const uint64_t end = static_cast<uint64_t>(offsets->items[1].number);
  const uint64_t elem = dtype->str == "F32" ? 4 : 2;
  const uint64_t data_size = file->size() - 8 - header_len;
  if (begin > end || end > data_size || end - begin != count * elem) {
    return absl::DataLossError(absl::StrCat(path, ": data_offsets do not match shape and file"));
  }
  const uint8_t* data = reinterpret_cast<const uint8_t*>(file->data()) + 8 + header_len + begin;
  absl::Status s = Convert(dtype->str, data, count, &t.values);
  if (!s.ok()) return s;
  return t;
}

absl::StatusOr<Tensor> ReadNpy(const std::string& path) {
  absl::StatusOr<std::string> file = ReadWholeFile(path);
  if (!file.ok()) return file.status();
  const std::string& b = *file;
  if (b.size() < 10 || b.compare(0, 6, "\x93NUMPY") != 0) {
    return absl::DataLossError(absl::StrCat(path, ": not an .npy file"));
  }
  const int major = static_cast<uint8_t>(b[6]);
  uint64_t header_len, header_start;
  if (major == 1) {
    header_len = static_cast<uint8_t>(b[8]) | (static_cast<uint8_t>(b[9]) << 8);
    header_start = 10;
  } else {
    if (b.size() < 12) return absl::DataLossError(absl::StrCat(path, ": short header"));
    uint32_t len;
    std::memcpy(&len, b.data() + 8, 4);
    header_len = len;
    header_start = 12;
  }
  if (header_start + header_len > b.size()) {
    return absl::DataLossError(absl::StrCat(path, ": header exceeds the file"));
  }
  const std::string header = b.substr(header_start, header_len);
  std::string descr;
  if (absl::StrContains(header, "'<f4'")) descr = "F32";
  if (absl::StrContains(header, "'<f2'")) descr = "F16";
  if (descr.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": only '<f2' and '<f4' .npy files: ", header));
  }
  if (absl::StrContains(header, "'fortran_order': True")) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": Fortran-order arrays unsupported"));
  }
  const size_t open = header.find("'shape': (");
  const size_t close = open == std::string::npos ? open : header.find(')', open);
  if (close == std::string::npos) return absl::DataLossError(absl::StrCat(path, ": no shape"));
  Tensor t;
  uint64_t count = 1;
  for (absl::string_view part : absl::StrSplit(header.substr(open + 10, close - open - 10), ',')) {
    part = absl::StripAsciiWhitespace(part);
    if (part.empty()) continue;
    uint64_t v;
    if (!absl::SimpleAtoi(part, &v)) return absl::DataLossError(absl::StrCat(path, ": bad shape"));
    t.shape.push_back(v);
    count *= v;
  }
  const uint64_t elem = descr == "F32" ? 4 : 2;
  const uint64_t data_start = header_start + header_len;
  if (b.size() - data_start < count * elem) {
    return absl::DataLossError(absl::StrCat(path, ": data shorter than its shape"));
  }
  absl::Status s = Convert(descr, reinterpret_cast<const uint8_t*>(b.data()) + data_start, count,
                           &t.values);
  if (!s.ok()) return s;
  return t;
}

absl::StatusOr<Tensor> ReadTensorFile(const std::string& path, absl::string_view name) {
  if (absl::EndsWith(path, ".safetensors")) return ReadSafetensors(path, name);
  if (absl::EndsWith(path, ".npy")) return ReadNpy(path);
  return absl::InvalidArgumentError(
      absl::StrCat(path, ": unknown file type (expected .safetensors or .npy)"));
}

}  // namespace eval
}  // namespace kvpack
