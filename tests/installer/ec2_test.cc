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

TEST(Ec2, DescribeParams) {
  Ec2Endpoint ep;
  const Params own = describe_params(ep, {});
  EXPECT_EQ(own,
            (Params{{"Action", "DescribeImages"}, {"Version", "2013-02-01"}, {"Owner.1", "self"}}));
  const Params ids = describe_params(ep, {"eki-0A1B2C3D", "emi-1A2B3C4D"});
  EXPECT_EQ(ids, (Params{{"Action", "DescribeImages"},
                         {"Version", "2013-02-01"},
                         {"ImageId.1", "eki-0A1B2C3D"},
                         {"ImageId.2", "emi-1A2B3C4D"}}));
}

TEST(Ec2, ParseDescribeResponse) {
  // Namespaced, two images, a nested blockDeviceMapping item that is not an image, an item
  // without a usable id (dropped), states and types lowercased.
  const std::string body =
      "<DescribeImagesResponse xmlns=\"http://ec2.amazonaws.com/doc/2013-02-01/\">"
      "<requestId>r</requestId><imagesSet>"
      "<item><imageId>emi-1A2B3C4D</imageId><imageLocation>b/eustore-x.manifest.xml"
      "</imageLocation><imageState>Available</imageState><imageType>machine</imageType>"
      "<name>eustore-x</name><blockDeviceMapping><item><deviceName>/dev/sda1</deviceName>"
      "<imageId>emi-FFFFFFFF</imageId></item></blockDeviceMapping></item>"
      "<item><imageId> eki-0A1B2C3D </imageId><imageLocation>/b/k.manifest.xml</imageLocation>"
      "<imageState>deregistered</imageState><imageType>KERNEL</imageType></item>"
      "<item><imageId>bogus</imageId></item>"
      "</imagesSet></DescribeImagesResponse>";
  auto r = parse_describe_response(200, body);
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].id, "emi-1A2B3C4D");
  EXPECT_EQ((*r)[0].location, "b/eustore-x.manifest.xml");
  EXPECT_EQ((*r)[0].state, "available");
  EXPECT_EQ((*r)[0].name, "eustore-x");
  EXPECT_EQ((*r)[1].id, "eki-0A1B2C3D");
  EXPECT_EQ((*r)[1].state, "deregistered");
  EXPECT_EQ((*r)[1].type, "kernel");
  EXPECT_TRUE(is_usable_state((*r)[0].state));
  EXPECT_FALSE(is_usable_state((*r)[1].state));

  auto empty = parse_describe_response(200,
                                       "<DescribeImagesResponse><imagesSet/>"
                                       "</DescribeImagesResponse>");
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->empty());
  auto no_set = parse_describe_response(200, "<DescribeImagesResponse/>");
  ASSERT_FALSE(no_set);
  EXPECT_EQ(no_set.error().code, Errc::kFormat);

  auto missing = parse_describe_response(
      400,
      "<Response><Errors><Error><Code>InvalidAMIID.NotFound</Code><Message>The image id "
      "'[emi-12345678]' does not exist</Message></Error></Errors></Response>");
  ASSERT_FALSE(missing);
  EXPECT_TRUE(is_image_not_found(missing.error())) << missing.error().message;
  auto denied = parse_describe_response(
      403, "<Response><Errors><Error><Code>AuthFailure</Code></Error></Errors></Response>");
  ASSERT_FALSE(denied);
  EXPECT_FALSE(is_image_not_found(denied.error()));
  EXPECT_NE(denied.error().message.find("DescribeImages: HTTP 403 AuthFailure"), std::string::npos);
}

}  // namespace
}  // namespace installer
