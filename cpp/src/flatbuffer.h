// A bounds-checked, zero-copy reader for the parts of the FlatBuffers wire format
// that a .tflite file uses. Every offset and length is checked against the buffer
// before it is followed, so a hostile file can only make a lookup fail, never read
// outside the model bytes.
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <string.h>

namespace tflm_vmcu {
namespace fb {

inline uint32_t LoadU32(const uint8_t* p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}
inline uint16_t LoadU16(const uint8_t* p) {
  uint16_t v;
  memcpy(&v, p, 2);
  return v;
}

struct Buffer {
  const uint8_t* data = nullptr;
  size_t size = 0;

  bool Contains(size_t pos, size_t len) const { return pos <= size && len <= size - pos; }
};

// A vector of scalars or of offsets (to tables or strings).
struct Vector {
  Buffer buf;
  size_t pos = 0;  // position of the first element
  uint32_t length = 0;
  bool present = false;

  const uint8_t* Bytes() const { return buf.data + pos; }
  int32_t Int32(uint32_t i) const {
    return static_cast<int32_t>(LoadU32(buf.data + pos + 4 * static_cast<size_t>(i)));
  }
  uint32_t UInt32(uint32_t i) const { return LoadU32(buf.data + pos + 4 * static_cast<size_t>(i)); }
};

class Table {
 public:
  Table() = default;

  // Validates the table header and vtable at `pos`.
  static bool At(const Buffer& buf, size_t pos, Table* out) {
    if (!buf.Contains(pos, 4) || (pos & 3) != 0) return false;
    const int64_t vt = static_cast<int64_t>(pos) - static_cast<int32_t>(LoadU32(buf.data + pos));
    if (vt < 0 || (vt & 1) != 0 || !buf.Contains(static_cast<size_t>(vt), 4)) return false;
    const uint16_t vt_size = LoadU16(buf.data + vt);
    const uint16_t obj_size = LoadU16(buf.data + vt + 2);
    if (vt_size < 4 || (vt_size & 1) != 0 || !buf.Contains(static_cast<size_t>(vt), vt_size))
      return false;
    if (obj_size < 4 || !buf.Contains(pos, obj_size)) return false;
    out->buf_ = buf;
    out->pos_ = pos;
    out->vtable_ = static_cast<size_t>(vt);
    out->vt_size_ = vt_size;
    out->obj_size_ = obj_size;
    return true;
  }

  // Root table of a FlatBuffer.
  static bool Root(const Buffer& buf, Table* out) {
    if (!buf.Contains(0, 8)) return false;
    return At(buf, LoadU32(buf.data), out);
  }

  bool valid() const { return buf_.data != nullptr; }

  // Position of field `id` (0-based) inside the object, or 0 if absent. Fails
  // (returns false) if the field would not fit in the object.
  bool FieldPos(int id, size_t size, size_t* field_pos) const {
    *field_pos = 0;
    const size_t vt_entry = 4 + 2 * static_cast<size_t>(id);
    if (vt_entry + 2 > vt_size_) return true;
    const uint16_t off = LoadU16(buf_.data + vtable_ + vt_entry);
    if (off == 0) return true;
    if (off < 4 || static_cast<size_t>(off) + size > obj_size_) return false;
    *field_pos = pos_ + off;
    return true;
  }

  // Scalar field; `ok` is cleared when the field is malformed.
  template <typename T>
  T Scalar(int id, T def, bool* ok) const {
    size_t p;
    if (!FieldPos(id, sizeof(T), &p)) {
      *ok = false;
      return def;
    }
    if (p == 0) return def;
    T v;
    memcpy(&v, buf_.data + p, sizeof(T));
    return v;
  }

  // Follows an offset field; returns false if malformed. `*target` is 0 if absent.
  bool Follow(int id, size_t* target) const {
    size_t p;
    *target = 0;
    if (!FieldPos(id, 4, &p)) return false;
    if (p == 0) return true;
    const uint32_t rel = LoadU32(buf_.data + p);
    if (rel == 0 || !buf_.Contains(p, rel)) return false;
    *target = p + rel;
    return true;
  }

  bool SubTable(int id, Table* out) const {
    size_t t;
    if (!Follow(id, &t)) return false;
    if (t == 0) {
      *out = Table();
      return true;
    }
    return At(buf_, t, out);
  }

  // Vector whose elements are `elem_size` bytes (4 for offsets).
  bool GetVector(int id, size_t elem_size, Vector* out) const {
    size_t t;
    *out = Vector();
    out->buf = buf_;
    if (!Follow(id, &t)) return false;
    if (t == 0) return true;
    if (!buf_.Contains(t, 4)) return false;
    const uint32_t n = LoadU32(buf_.data + t);
    if (!buf_.Contains(t + 4, static_cast<size_t>(n) * elem_size)) return false;
    if (elem_size > 1 && ((t + 4) % (elem_size > 4 ? 4 : elem_size)) != 0) return false;
    out->pos = t + 4;
    out->length = n;
    out->present = true;
    return true;
  }

  // Table element `i` of a vector of offsets.
  static bool Element(const Vector& v, uint32_t i, Table* out) {
    if (i >= v.length) return false;
    const size_t p = v.pos + 4 * static_cast<size_t>(i);
    const uint32_t rel = LoadU32(v.buf.data + p);
    if (rel == 0 || !v.buf.Contains(p, rel)) return false;
    return At(v.buf, p + rel, out);
  }

  // String field: NUL-terminated in the buffer (checked). `*str` is "" if absent.
  bool String(int id, const char** str, uint32_t* len) const {
    Vector v;
    *str = "";
    *len = 0;
    if (!GetVector(id, 1, &v)) return false;
    if (!v.present) return true;
    if (!buf_.Contains(v.pos, static_cast<size_t>(v.length) + 1)) return false;
    if (buf_.data[v.pos + v.length] != 0) return false;
    *str = reinterpret_cast<const char*>(buf_.data + v.pos);
    *len = v.length;
    return true;
  }

  // Position of a union/table field's target without validating it as a table.
  const Buffer& buffer() const { return buf_; }

 private:
  Buffer buf_;
  size_t pos_ = 0;
  size_t vtable_ = 0;
  uint16_t vt_size_ = 0;
  uint16_t obj_size_ = 0;
};

}  // namespace fb
}  // namespace tflm_vmcu
