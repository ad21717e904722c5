#include "th/data/text_corpus.hpp"

#include <glob.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "json_line.hpp"
#include "th/core/error.hpp"
#include "th/data/bible.hpp"
#include "th/data/corpus.hpp"

namespace th {

TextDocuments parse_text_documents(const std::string& name) {
  if (name == "blank_line") return TextDocuments::BlankLine;
  if (name == "file") return TextDocuments::File;
  throw Error("prepare%text_documents = '" + name + "' is not 'blank_line' or 'file'");
}

bool is_text_source(const std::string& source) {
  if (source.rfind("text:", 0) == 0 || source.rfind("jsonl:", 0) == 0) return true;
  return source.rfind("bible:", 0) == 0 && source.find(':', 6) == std::string::npos;
}

namespace {
bool is_regular(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::vector<std::string> expand_paths(const std::string& source, const std::string& path, const char* suffix) {
  const std::string what = "prepare%source = '" + source + "'";
  if (path.empty()) throw InputError(what + ": no path after the prefix");
  std::vector<std::string> files;
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    for (const auto& e : std::filesystem::directory_iterator(path, ec)) {
      const std::string p = e.path().string();
      if (p.size() > std::strlen(suffix) && p.compare(p.size() - std::strlen(suffix), std::string::npos, suffix) == 0 &&
          is_regular(p))
        files.push_back(p);
    }
    if (ec) throw InputError(what + ": cannot list the folder " + path + ": " + ec.message());
    if (files.empty()) throw InputError(what + ": the folder " + path + " has no *" + suffix + " file");
  } else if (path.find_first_of("*?[") != std::string::npos) {
    glob_t g{};
    const int rc = ::glob(path.c_str(), GLOB_ERR, nullptr, &g);
    if (rc == 0)
      for (std::size_t i = 0; i < g.gl_pathc; ++i)
        if (is_regular(g.gl_pathv[i])) files.push_back(g.gl_pathv[i]);
    globfree(&g);
    if (rc != 0 && rc != GLOB_NOMATCH) throw InputError(what + ": cannot expand the pattern " + path);
    if (files.empty()) throw InputError(what + ": no file matches " + path);
  } else {
    if (!is_regular(path)) throw InputError(what + ": " + path + ": no such file");
    files.push_back(path);
  }
  std::sort(files.begin(), files.end());
  return files;
}

// Whether a line holds nothing but whitespace (what normalize_whitespace removes), without
// building the normalized string.
bool blank(const std::string& line) {
  for (std::size_t i = 0; i < line.size(); ++i) {
    const auto c = static_cast<unsigned char>(line[i]);
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f') continue;
    if (c == 0xC2 && i + 1 < line.size() && static_cast<unsigned char>(line[i + 1]) == 0xA0) {
      ++i;
      continue;
    }
    return false;
  }
  return true;
}

// Lines of the files one after the other, with the position of the next line.
class LineFiles {
 public:
  explicit LineFiles(const std::vector<std::string>& files) : files_(files) {}
  ~LineFiles() {
    close();
    std::free(buf_);
  }
  LineFiles(const LineFiles&) = delete;
  LineFiles& operator=(const LineFiles&) = delete;

  // The next line of the current file (without its newline, BOM and CR kept out), false at its
  // end (then next_file() moves on). `where` names it for messages.
  bool line(std::string& out) {
    if (!open_current()) return false;
    const ssize_t n = ::getline(&buf_, &cap_, fp_);
    if (n < 0) {
      if (std::ferror(fp_)) throw InputError(files_[file_] + ": read error after line " + std::to_string(line_));
      return false;
    }
    offset_ += n;
    ++line_;
    std::size_t len = static_cast<std::size_t>(n), start = 0;
    if (len > 0 && buf_[len - 1] == '\n') --len;
    if (line_ == 1 && len >= 3 && std::memcmp(buf_, "\xEF\xBB\xBF", 3) == 0) start = 3;  // UTF-8 BOM
    out.assign(buf_ + start, len - start);
    const std::size_t bad = find_invalid_utf8(out);
    if (bad != std::string::npos)
      throw InputError(where() + ": invalid UTF-8 at byte " + std::to_string(bad + 1 + start) + " of the line");
    return true;
  }
  bool at_end() const { return file_ >= files_.size(); }
  void next_file() {
    close();
    ++file_;
    offset_ = line_ = 0;
  }
  std::string where() const { return (file_ < files_.size() ? files_[file_] : std::string("?")) + ":" + std::to_string(line_); }
  std::int64_t file() const { return static_cast<std::int64_t>(file_); }
  std::int64_t offset() const { return offset_; }
  std::int64_t line_no() const { return line_; }
  void seek(std::int64_t file, std::int64_t offset, std::int64_t line) {
    close();
    file_ = static_cast<std::size_t>(file);
    offset_ = offset;
    line_ = line;
  }

 private:
  bool open_current() {
    if (fp_) return true;
    if (file_ >= files_.size()) return false;
    fp_ = std::fopen(files_[file_].c_str(), "rb");
    if (!fp_) throw InputError(files_[file_] + ": cannot open: " + std::strerror(errno));
    if (offset_ > 0 && ::fseeko(fp_, offset_, SEEK_SET) != 0)
      throw InputError(files_[file_] + ": cannot seek to byte " + std::to_string(offset_));
    return true;
  }
  void close() {
    if (fp_) std::fclose(fp_);
    fp_ = nullptr;
  }

  const std::vector<std::string>& files_;
  std::size_t file_ = 0;
  std::int64_t offset_ = 0, line_ = 0;
  std::FILE* fp_ = nullptr;
  char* buf_ = nullptr;
  std::size_t cap_ = 0;
};

// text:, documents separated by blank lines or one per file.
class TextReader final : public DocumentReader {
 public:
  explicit TextReader(const TextSource& s) : s_(s), lines_(s.files) {}
  bool next(Document& doc) override {
    doc.text.clear();
    std::string line;
    bool started = false;
    while (!lines_.at_end()) {
      if (!started) pos_ = {docs_, lines_.file(), lines_.offset(), lines_.line_no()};
      if (!lines_.line(line)) {  // the end of a file ends a document
        lines_.next_file();
        if (started || s_.documents == TextDocuments::File) return finish(doc, started);
        continue;
      }
      if (s_.documents == TextDocuments::BlankLine && blank(line)) {
        if (started) return finish(doc, true);
        continue;
      }
      if (!started) doc.where = lines_.where();
      started = true;
      doc.text += line;
      doc.text += '\n';
    }
    return false;
  }
  DocumentPosition position() const override {
    return {docs_, lines_.file(), lines_.offset(), lines_.line_no()};
  }
  void seek(const DocumentPosition& p) override {
    lines_.seek(p.file, p.offset, p.line);
    docs_ = p.document;
  }

 private:
  bool finish(Document& doc, bool started) {
    if (!started) doc.where = s_.files[static_cast<std::size_t>(pos_.file)] + ":1";  // an empty file
    doc.text = normalize_whitespace(doc.text);
    doc.key = doc.text;
    ++docs_;
    return true;
  }
  const TextSource& s_;
  LineFiles lines_;
  std::int64_t docs_ = 0;
  DocumentPosition pos_;
};

// jsonl:, one document per non-blank line.
class JsonlReader final : public DocumentReader {
 public:
  explicit JsonlReader(const TextSource& s) : s_(s), lines_(s.files) {}
  bool next(Document& doc) override {
    std::string line;
    while (!lines_.at_end()) {
      if (!lines_.line(line)) {
        lines_.next_file();
        continue;
      }
      if (blank(line)) continue;
      doc.where = lines_.where();
      const JsonFieldResult r = json_string_field(line, s_.field);
      using S = JsonFieldResult::Status;
      switch (r.status) {
        case S::Ok: break;
        case S::Malformed: throw InputError(doc.where + ": malformed JSON: " + r.message);
        case S::NotObject: throw InputError(doc.where + ": the line is JSON but not an object");
        case S::Missing: throw InputError(doc.where + ": the object has no member '" + s_.field + "'");
        case S::NotString: throw InputError(doc.where + ": member '" + s_.field + "' is not a string");
      }
      if (find_invalid_utf8(r.value) != std::string::npos)
        throw InputError(doc.where + ": member '" + s_.field + "' holds invalid UTF-8 (a bad \\u escape?)");
      doc.text = normalize_whitespace(r.value);
      doc.key = doc.text;
      ++docs_;
      return true;
    }
    return false;
  }
  DocumentPosition position() const override { return {docs_, lines_.file(), lines_.offset(), lines_.line_no()}; }
  void seek(const DocumentPosition& p) override {
    lines_.seek(p.file, p.offset, p.line);
    docs_ = p.document;
  }

 private:
  const TextSource& s_;
  LineFiles lines_;
  std::int64_t docs_ = 0;
};

// Documents held in memory (the Bible's chapters).
class MemoryReader final : public DocumentReader {
 public:
  explicit MemoryReader(const std::vector<Document>& docs) : docs_(docs) {}
  bool next(Document& doc) override {
    if (i_ >= docs_.size()) return false;
    doc = docs_[i_++];
    return true;
  }
  DocumentPosition position() const override { return {static_cast<std::int64_t>(i_), 0, 0, 0}; }
  void seek(const DocumentPosition& p) override { i_ = static_cast<std::size_t>(p.document); }

 private:
  const std::vector<Document>& docs_;
  std::size_t i_ = 0;
};
}  // namespace

TextSource parse_text_source(const std::string& source, TextDocuments documents) {
  TextSource s;
  s.spec = source;
  s.documents = documents;
  if (source.rfind("text:", 0) == 0) {
    s.kind = TextSource::Kind::Text;
    s.files = expand_paths(source, source.substr(5), ".txt");
  } else if (source.rfind("jsonl:", 0) == 0) {
    s.kind = TextSource::Kind::Jsonl;
    const std::size_t colon = source.rfind(':');
    if (colon <= 6 || colon + 1 == source.size())
      throw InputError("prepare%source = '" + source + "': expected 'jsonl:PATH:FIELD', e.g. 'jsonl:data/*.jsonl:text'");
    s.field = source.substr(colon + 1);
    s.files = expand_paths(source, source.substr(6, colon - 6), ".jsonl");
  } else if (is_text_source(source)) {
    s.kind = TextSource::Kind::Bible;
    s.module = source.substr(6);
    if (s.module.empty()) throw InputError("prepare%source = '" + source + "': expected 'bible:MODULE'");
  } else {
    throw InputError("prepare%source = '" + source + "' is not a text source ('text:PATH', 'jsonl:PATH:FIELD', "
                     "'bible:MODULE')");
  }
  return s;
}

std::string text_split_key(const TextSource& s) {
  return s.kind == TextSource::Kind::Bible ? "chapter reference (e.g. 'Genesis 1')"
                                           : "the document's text (whitespace-normalized)";
}

std::string text_documents_name(const TextSource& s) {
  switch (s.kind) {
    case TextSource::Kind::Bible: return "chapter";
    case TextSource::Kind::Jsonl: return "line";
    case TextSource::Kind::Text: return s.documents == TextDocuments::File ? "file" : "blank_line";
  }
  return "blank_line";
}

std::unique_ptr<DocumentReader> open_documents(const TextSource& source) {
  switch (source.kind) {
    case TextSource::Kind::Text: return std::make_unique<TextReader>(source);
    case TextSource::Kind::Jsonl: return std::make_unique<JsonlReader>(source);
    case TextSource::Kind::Bible: break;
  }
  throw Error("a Bible source is read with read_bible_chapters(), then open_documents(chapters)");
}

std::unique_ptr<DocumentReader> open_documents(const std::vector<Document>& documents) {
  return std::make_unique<MemoryReader>(documents);
}

std::vector<Document> read_bible_chapters(const std::string& module) {
  std::vector<Document> chapters;
  for (const Verse& v : read_bible_module(module, kWholeBible)) {
    const std::string chapter = v.ref.substr(0, v.ref.rfind(':'));
    if (chapters.empty() || chapters.back().key != chapter)
      chapters.push_back({std::string(), chapter, "SWORD module " + module + ", " + chapter});
    if (v.text.empty()) continue;
    std::string& t = chapters.back().text;
    t += (t.empty() ? "" : " ") + v.text;
  }
  return chapters;
}

std::string pack_documents(const std::vector<Document>& documents) {
  std::string out;
  for (const Document& d : documents)
    for (const std::string* s : {&d.text, &d.key, &d.where}) {
      const std::uint64_t n = s->size();
      out.append(reinterpret_cast<const char*>(&n), sizeof n);
      out += *s;
    }
  return out;
}

std::vector<Document> unpack_documents(const std::string& packed) {
  std::vector<Document> docs;
  std::size_t i = 0;
  while (i < packed.size()) {
    Document d;
    for (std::string* s : {&d.text, &d.key, &d.where}) {
      std::uint64_t n = 0;
      TH_CHECK(i + sizeof n <= packed.size(), "packed documents cut short");
      std::memcpy(&n, packed.data() + i, sizeof n);
      i += sizeof n;
      TH_CHECK(i + n <= packed.size(), "packed documents cut short");
      s->assign(packed, i, n);
      i += n;
    }
    docs.push_back(std::move(d));
  }
  return docs;
}

}  // namespace th
