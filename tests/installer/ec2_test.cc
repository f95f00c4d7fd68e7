// Tests of installer/ec2.cc: the RegisterImage parameters, the SigV2 known answer of EUSTORE.md
// §5, SigV4 shape, and response/error parsing (namespace-agnostic), table-driven.
#include "installer/ec2.h"

#include <gtest/gtest.h>

namespace installer {
namespace {

Ec2Endpoint example() {
  Ec2Endpoint ep;
  ep.url = "http://euca.example.com:8773/services/Eucalyptus";
  ep.access_key = "AKIAIOSFODNN7EXAMPLE";
  ep.secret_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
  return ep;
}

std::string param(const std::string& body, const std::string& name) {
  std::string key = name + "=";
  std::size_t pos = 0;
  while ((pos = body.find(key, pos)) != std::string::npos) {
    if (pos == 0 || body[pos - 1] == '&') {
      auto end = body.find('&', pos);
      return body.substr(pos + key.size(), end == std::string::npos ? end : end - pos - key.size());
    }
    pos += key.size();
  }
  return {};
}

TEST(Ec2, SigV2KnownAnswerFromEustoreSection5) {
  RegisterParams p;
  p.image_location = "mybucket/vmlinuz-2.6.28.manifest.xml";
  p.name = "eustore-test-kernel";
  p.architecture = "x86_64";
  SignedPost post = sign_post(example(), register_params(example(), p), 1369353600);
  EXPECT_EQ(post.url, "http://euca.example.com:8773/services/Eucalyptus");
  // ymwsvXUMOvPjtc/TBUt09NI4qqsd7G9ubavWZUq3R+U= form-encoded.
  EXPECT_EQ(param(post.body, "Signature"), "ymwsvXUMOvPjtc%2FTBUt09NI4qqsd7G9ubavWZUq3R%2BU%3D");
  EXPECT_EQ(param(post.body, "Timestamp"), "2013-05-24T00%3A00%3A00Z");
  EXPECT_EQ(param(post.body, "SignatureMethod"), "HmacSHA256");
  EXPECT_EQ(param(post.body, "Version"), "2013-02-01");
  EXPECT_EQ(post.headers[0],
            (std::pair<std::string, std::string>{"Host", "euca.example.com:8773"}));
}

TEST(Ec2, SigV4HasAuthorizationForServiceEc2) {
  Ec2Endpoint ep = example();
  ep.signature = Ec2Signature::kV4;
  ep.region = "eucalyptus";
  RegisterParams p{"b/k.manifest.xml", "n", "", "i386", "", ""};
  SignedPost post = sign_post(ep, register_params(ep, p), 1369353600);
  std::string auth;
  for (const auto& [k, v] : post.headers) {
    if (k == "Authorization") auth = v;
  }
  EXPECT_EQ(auth.rfind("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/eucalyptus/ec2/"
                       "aws4_request,SignedHeaders=content-type;host;x-amz-date,Signature=",
                       0),
            0u)
      << auth;
  EXPECT_EQ(param(post.body, "Signature"), "");
  EXPECT_EQ(post.body.find("AWSAccessKeyId"), std::string::npos);
}

TEST(Ec2, ParamsNeverSendKernelIdTrue) {
  RegisterParams p{"b/k", "n", "d", "x86_64", "eki-12345678", "eri-87654321"};
  Params got = register_params(example(), p);
  Params want = {{"Action", "RegisterImage"},  {"Version", "2013-02-01"},
                 {"ImageLocation", "b/k"},     {"Name", "n"},
                 {"Description", "d"},         {"Architecture", "x86_64"},
                 {"KernelId", "eki-12345678"}, {"RamdiskId", "eri-87654321"}};
  EXPECT_EQ(got, want);
}

struct ResponseCase {
  int status;
  std::string body;
  bool ok;
  std::string want;  // id, or a substring of the error message
};

TEST(Ec2, ParseRegisterResponse) {
  const ResponseCase cases[] = {
      {200,
       "<RegisterImageResponse xmlns=\"http://ec2.amazonaws.com/doc/2013-02-01/\"><requestId>r"
       "</requestId><imageId>emi-1A2B3C4D</imageId></RegisterImageResponse>",
       true, "emi-1A2B3C4D"},
      {200,
       "<ns:RegisterImageResponse xmlns:ns=\"x\"><ns:imageId> ami-0123456789abcdef0 "
       "</ns:imageId></ns:RegisterImageResponse>",
       true, "ami-0123456789abcdef0"},
      {200, "<R><imageId>emi-XYZ</imageId></R>", false, "no usable <imageId>"},
      {200, "not xml", false, "not XML"},
      {400,
       "<Response><Errors><Error><Code>InvalidAMIName.Duplicate</Code><Message>AMI name n is "
       "already in use</Message></Error></Errors><RequestID>x</RequestID></Response>",
       false, "HTTP 400 InvalidAMIName.Duplicate: AMI name n is already in use"},
      {503, "Service Unavailable\n", false, "HTTP 503: Service Unavailable"},
      {403, "", false, "HTTP 403"},
  };
  for (const auto& c : cases) {
    auto r = parse_register_response(c.status, c.body);
    ASSERT_EQ(r.has_value(), c.ok) << c.body;
    if (c.ok) {
      EXPECT_EQ(*r, c.want);
    } else {
      EXPECT_NE(r.error().message.find(c.want), std::string::npos) << r.error().message;
    }
  }
}

TEST(Ec2, ImageIds) {
  EXPECT_TRUE(is_image_id("eki-0A1B2C3D"));
  EXPECT_TRUE(is_image_id("ari-0123456789abcdef0"));
  EXPECT_FALSE(is_image_id("emi-123"));
  EXPECT_FALSE(is_image_id("xmi-12345678"));
  EXPECT_FALSE(is_image_id("emi-1234567g"));
}

}  // namespace
}  // namespace installer
