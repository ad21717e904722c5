#pragma once
// Monolingual text for language models (task='prepare'), read as a stream of documents so that a
// corpus larger than memory never has to be held: `text:PATH` (UTF-8 files: one file, a folder's
// *.txt files, or a glob; documents separated by blank lines, or one per file), `jsonl:PATH:FIELD`
// (one JSON object per line, the document in string member FIELD; PATH as for text, a folder's
// *.jsonl), `bible:MODULE` (one SWORD module read with diatheke, a document per chapter).
// Whitespace is normalized (normalize_whitespace); bad input stops with InputError "file:line: ...".
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace th {

enum class TextDocuments { BlankLine, File };
TextDocuments parse_text_documents(const std::string& name);  // prepare%text_documents

struct TextSource {
  enum class Kind { Text, Jsonl, Bible } kind = Kind::Text;
  std::string spec;                // prepare%source as given
  std::vector<std::string> files;  // text, jsonl: the files, in reading order
  std::string field;               // jsonl: the member holding the text
  std::string module;              // bible: the SWORD module
  TextDocuments documents = TextDocuments::BlankLine;
};

// 'text:', 'jsonl:', or 'bible:' with a single module (two modules make a parallel corpus).
bool is_text_source(const std::string& source);

// Parses prepare%source and expands its path: a file; a folder (its *.txt or *.jsonl files,
// sorted by name, not recursive); or a glob pattern (*, ?, [...]; matches sorted). InputError for
// a malformed spec or when no file matches.
TextSource parse_text_source(const std::string& source, TextDocuments documents);

// What the split hash is taken of, and how documents are delimited, in words (dataset attributes).
std::string text_split_key(const TextSource& s);
std::string text_documents_name(const TextSource& s);

struct Document {
  std::string text;   // whitespace-normalized; may be empty (the caller skips and counts it)
  std::string key;    // the split key: the text itself, or the chapter reference
  std::string where;  // "file:line" of its first line (messages)
};

// Where a document starts, so that a reader can resume there (the ranks of a prepare job each
// start at their own share of the corpus).
struct DocumentPosition {
  std::int64_t document = 0;  // documents before it
  std::int64_t file = 0;      // index into TextSource::files
  std::int64_t offset = 0;    // byte offset of its first line in that file
  std::int64_t line = 0;      // lines of that file before it
};

class DocumentReader {
 public:
  virtual ~DocumentReader() = default;
  // The next document; false at the end of the corpus. InputError "file:line: ..." for invalid
  // UTF-8 or a malformed JSON line.
  virtual bool next(Document& doc) = 0;
  // Where the next document starts.
  virtual DocumentPosition position() const = 0;
  // Continue from a position that position() returned (in this or another reader of the source).
  virtual void seek(const DocumentPosition& p) = 0;
};

// Reads text and jsonl sources from their files; a Bible source needs its chapters read first.
std::unique_ptr<DocumentReader> open_documents(const TextSource& source);
// A reader over documents held in memory (the Bible's chapters: 5 MB, read once by diatheke).
std::unique_ptr<DocumentReader> open_documents(const std::vector<Document>& documents);

// bible:MODULE's documents: one per chapter ("Genesis 1"), its verses joined by spaces.
std::vector<Document> read_bible_chapters(const std::string& module);
// The documents as one string and back (to broadcast them).
std::string pack_documents(const std::vector<Document>& documents);
std::vector<Document> unpack_documents(const std::string& packed);

}  // namespace th
