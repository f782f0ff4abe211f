//! EDRM XML 1.2: one `Document` per message and per attachment, with its
//! fields as `Tag`s, its native file (path, size, SHA-256) as an
//! `ExternalFile`, and each attachment tied to its message by an
//! `Attachment` `Relationship` (the family).

use std::io::Write;

/// A document for the XML.
pub struct Document {
    /// Its id (the DAT's DOCID).
    pub doc_id: String,
    /// `Message` or `File`.
    pub doc_type: &'static str,
    /// Its media type.
    pub mime_type: String,
    /// Fields: name, type (`Text`, `DateTime`, `Integer`), value.
    pub tags: Vec<(&'static str, &'static str, String)>,
    /// The native: directory, file name, size, SHA-256 (hex).
    pub native: Option<(String, String, u64, String)>,
}

/// XML 1.0 cannot carry most control characters, nor U+FFFE and U+FFFF,
/// even escaped (its `Char` production).
fn attr(s: &str) -> String {
    let clean: String = s
        .chars()
        .filter(|c| (!c.is_control() || matches!(c, '\t' | '\n' | '\r')) && !matches!(c, '\u{FFFE}' | '\u{FFFF}'))
        .collect();
    quick_xml::escape::escape(clean.as_str()).replace('\n', "&#10;").replace('\r', "&#13;").replace('\t', "&#9;")
}

/// The XML prolog and everything before the first document.
pub fn header(out: &mut impl Write, batch: &str) -> std::io::Result<()> {
    out.write_all(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")?;
    out.write_all(b"<Root MajorVersion=\"1\" MinorVersion=\"2\" Description=\"Strongroom retention export\" Locale=\"en-US\" DataInterchangeType=\"Update\">\n")?;
    writeln!(out, " <Batch name=\"{}\">", attr(batch))?;
    out.write_all(b"  <Documents>\n")
}

/// One document.
pub fn document(out: &mut impl Write, d: &Document) -> std::io::Result<()> {
    writeln!(
        out,
        "   <Document DocID=\"{}\" DocType=\"{}\" MimeType=\"{}\">",
        attr(&d.doc_id),
        d.doc_type,
        attr(&d.mime_type)
    )?;
    out.write_all(b"    <Tags>\n")?;
    // An empty value of a typed tag (an Integer, a DateTime) is left out.
    for (name, kind, value) in d.tags.iter().filter(|(_, _, v)| !v.is_empty()) {
        writeln!(out, "     <Tag TagName=\"{name}\" TagDataType=\"{kind}\" TagValue=\"{}\"/>", attr(value))?;
    }
    out.write_all(b"    </Tags>\n")?;
    if let Some((dir, name, size, sha256)) = &d.native {
        out.write_all(b"    <Files>\n     <File FileType=\"Native\">\n")?;
        writeln!(
            out,
            "      <ExternalFile FilePath=\"{}\" FileName=\"{}\" FileSize=\"{size}\" Hash=\"{sha256}\" HashType=\"SHA256\"/>",
            attr(dir),
            attr(name)
        )?;
        out.write_all(b"     </File>\n    </Files>\n")?;
    }
    out.write_all(b"   </Document>\n")
}

/// The families (parent, child) and the end of the file.
pub fn footer(out: &mut impl Write, families: &[(String, String)]) -> std::io::Result<()> {
    out.write_all(b"  </Documents>\n  <Relationships>\n")?;
    for (parent, child) in families {
        writeln!(
            out,
            "   <Relationship Type=\"Attachment\" ParentDocId=\"{}\" ChildDocId=\"{}\"/>",
            attr(parent),
            attr(child)
        )?;
    }
    out.write_all(b"  </Relationships>\n </Batch>\n</Root>\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_values_stay_inside_their_attribute() {
        let doc = Document {
            doc_id: "SR1".into(),
            doc_type: "Message",
            mime_type: "message/rfc822".into(),
            tags: vec![("#Subject", "Text", "a\"/><Evil x=\"&\u{0}\u{FFFF}\nline".into())],
            native: None,
        };
        let mut bytes = Vec::new();
        header(&mut bytes, "b").unwrap();
        document(&mut bytes, &doc).unwrap();
        footer(&mut bytes, &[]).unwrap();
        let xml = String::from_utf8(bytes).unwrap();
        assert!(xml.contains("TagValue=\"a&quot;/&gt;&lt;Evil x=&quot;&amp;&#10;line\""), "{xml}");
        let mut r = quick_xml::Reader::from_str(&xml);
        let mut tags = 0;
        loop {
            match r.read_event().unwrap() {
                quick_xml::events::Event::Empty(e) if e.name().as_ref() == b"Tag" => tags += 1,
                quick_xml::events::Event::Eof => break,
                _ => {}
            }
        }
        assert_eq!(tags, 1);
    }
}
