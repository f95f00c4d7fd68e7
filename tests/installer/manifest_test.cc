// Tests of installer/manifest.cc: the exact one-line serialisation, signed text, and parsing
// (round trip, namespaces, malformed documents), table-driven.
#include "installer/manifest.h"

#include <gtest/gtest.h>

namespace installer {
namespace {

Manifest sample() {
  Manifest m;
  m.architecture = "x86_64";
  m.kernel_id = "eki-11111111";
  m.ramdisk_id = "eri-22222222";
  m.name = "eustore-demo";
  m.user = "123456789012";
  m.digest_sha1 = std::string(40, 'a');
  m.size = 5;
  m.bundled_size = 32;
  m.ec2_encrypted_key = "0a";
  m.user_encrypted_key = "0b";
  m.ec2_encrypted_iv = "0c";
  m.user_encrypted_iv = "0d";
  m.parts = {{"eustore-demo.part.00", std::string(40, 'b')}};
  m.signature = "ff";
  return m;
}

TEST(Manifest, ExactSerialisation) {
  EXPECT_EQ(
      serialize(sample()),
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?><manifest><version>2007-10-10</version>"
      "<bundler><name>tusk</name><version>0.1.0</version><release>0</release></bundler>"
      "<machine_configuration><architecture>x86_64</architecture><kernel_id>eki-11111111"
      "</kernel_id><ramdisk_id>eri-22222222</ramdisk_id></machine_configuration><image><name>"
      "eustore-demo</name><user>123456789012</user><type>machine</type><digest algorithm=\"SHA1\">"
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa</digest><size>5</size><bundled_size>32"
      "</bundled_size><ec2_encrypted_key algorithm=\"AES-128-CBC\">0a</ec2_encrypted_key>"
      "<user_encrypted_key algorithm=\"AES-128-CBC\">0b</user_encrypted_key><ec2_encrypted_iv>0c"
      "</ec2_encrypted_iv><user_encrypted_iv>0d</user_encrypted_iv><parts count=\"1\"><part "
      "index=\"0\"><filename>eustore-demo.part.00</filename><digest algorithm=\"SHA1\">"
      "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb</digest></part></parts></image><signature>ff"
      "</signature></manifest>");
}

TEST(Manifest, SignedTextIsTheTwoElementsAsSerialised) {
  Manifest m = sample();
  std::string doc = serialize(m);
  std::string st = signed_text(m);
  EXPECT_EQ(st.rfind("<machine_configuration>", 0), 0u);
  EXPECT_NE(doc.find(machine_configuration_xml(m) + image_xml(m)), std::string::npos);
}

TEST(Manifest, ParseRoundTripAndCutSignedText) {
  Manifest m = sample();
  auto p = parse_manifest(serialize(m));
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->signed_text, signed_text(m));
  EXPECT_EQ(serialize(p->manifest), serialize(m));
}

TEST(Manifest, ParseToleratesPrettyPrintingAndNamespaces) {
  std::string xml =
      "<?xml version='1.0' encoding='ASCII'?>\n<m:manifest xmlns:m=\"urn:x\">\n"
      "  <m:machine_configuration><m:architecture>i386</m:architecture>"
      "</m:machine_configuration>\n  <m:image>\n <m:name>n</m:name><m:type>kernel</m:type>"
      "<m:digest algorithm='SHA1'>" +
      std::string(40, 'c') +
      "</m:digest><m:size>1</m:size><m:bundled_size>16</m:bundled_size>"
      "<m:parts count='2'><m:part index='1'><m:filename>n.part.01</m:filename><m:digest>" +
      std::string(40, 'e') +
      "</m:digest></m:part><m:part index='0'><m:filename>n.part.00"
      "</m:filename><m:digest>" +
      std::string(40, 'd') +
      "</m:digest></m:part></m:parts></m:image><m:signature>UNSIGNED</m:signature></m:manifest>";
  auto p = parse_manifest(xml);
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->manifest.type, ImageType::kKernel);
  ASSERT_EQ(p->manifest.parts.size(), 2u);
  EXPECT_EQ(p->manifest.parts[0].filename, "n.part.00");
  EXPECT_EQ(p->manifest.parts[1].filename, "n.part.01");
}

TEST(Manifest, MalformedDocuments) {
  const std::string ok = serialize(sample());
  auto with = [&](const std::string& from, const std::string& to) {
    std::string s = ok;
    s.replace(s.find(from), from.size(), to);
    return s;
  };
  struct Case {
    std::string xml;
    std::string why;
  } cases[] = {
      {"<manifest", "not XML"},
      {"<other/>", "root element"},
      {with("<size>5</size>", "<size>five</size>"), "not a number"},
      {with(std::string(40, 'a'), "xyz"), "SHA-1"},
      {with("count=\"1\"", "count=\"2\""), "count"},
      {with("<filename>eustore-demo.part.00", "<filename>../etc/passwd"), "basename"},
      {with("index=\"0\"", "index=\"3\""), "indices"},
  };
  for (const auto& c : cases) {
    auto p = parse_manifest(c.xml);
    ASSERT_FALSE(p) << c.xml;
    EXPECT_NE(p.error().message.find(c.why), std::string::npos) << p.error().message;
  }
}

}  // namespace
}  // namespace installer
