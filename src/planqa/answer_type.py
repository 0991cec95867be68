"""What kind of fact a question asks for, and whether a sentence holds one.

A question about the plan's own topics can still ask for something the plan never
gives: a budget, a city, a date, the figure *before* the reform. Retrieval scores
cannot see that (the passage is on topic); the expected answer type can. If no
candidate sentence carries a fact of the asked type, the honest answer is that
the plan does not say. Pure functions over Simplified text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

_NUM = r"(?:\d+(?:\.\d+)?|[一二三四五六七八九十百千万两几]+)"
# Provinces and large cities: what a "which cities/provinces" question needs named.
_PLACES = ("北京|天津|上海|重庆|河北|山西|辽宁|吉林|黑龙江|江苏|浙江|安徽|福建|江西|山东|河南|"
           "湖北|湖南|广东|海南|四川|贵州|云南|陕西|甘肃|青海|台湾|内蒙古|广西|西藏|宁夏|新疆|"
           "香港|澳门|深圳|广州|武汉|南京|杭州|成都|西安|苏州|青岛|大连|厦门|宁波|沈阳|长沙|郑州|"
           "济南|合肥|福州|昆明|哈尔滨|长春|石家庄|太原|南昌|南宁|贵阳|兰州|乌鲁木齐|呼和浩特|"
           "拉萨|银川|西宁|海口|雄安")
# A personal name with a title, e.g. 习近平总书记; role words alone (兼职副主席) are no name.
_SURNAMES = ("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡"
             "余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯"
             "龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤习")


#: "how many" asking for a number of things; "how many need to be…", "how many of the
#: posts" ask for a share, which the plan gives as a fraction (三分之二以上).
HOW_MANY_ITEMS = (r"\bhow many\b(?! (?:of|need|needs|must|have|has|should|are|is|will|can|"
                  r"would|do|does)\b)")


@dataclass(frozen=True)
class AnswerType:
    name: str
    asks: re.Pattern[str]  # matched against the question
    holds: re.Pattern[str]  # a sentence that can answer it matches this
    #: a question it matches that asks something else after all ("会不会设几个")
    unless: re.Pattern[str] | None = None
    #: what a sentence that holds the type must also agree with in the question (the unit
    #: of a count, the post of a person)
    agrees: Callable[[str, str], bool] | None = None


# A count's unit says what is counted. Things and people count alike ("几个编制" for
# 1120名, "几家" for 13个); a span of time or a number of occasions does not: "一届是几年"
# is not answered by 一届, nor "几个名额" by 2016年.
_ASKED_UNIT = re.compile(r"(?:多少|几)\s*([名人个家所项位条次届岁天年])")
_EXACT_UNITS = "次届岁天年"


# "代表里头四十五岁以下的得有多少人": how many of a body's members, which a share answers
_HOW_MANY_OF = re.compile(r"(?:里|中|里头|里面|当中)[^,，。?？]{0,14}(?:多少|几)\s*(?:人|名|个人)")
_SHARE = re.compile(r"分之|%|％|成以上|半数")


def _unit_agrees(question: str, sentence: str) -> bool:
    """Does the sentence count in the unit the question asks for (any, if it names none)?"""
    m = _ASKED_UNIT.search(question)
    if not m:
        return True
    if _HOW_MANY_OF.search(question) and _SHARE.search(sentence):
        return True
    units = m.group(1) if m.group(1) in _EXACT_UNITS else "名人个家所项位条"
    return re.search(rf"{_NUM}\s*[{units}]", sentence) is not None


# A person asked for by a post is named with it: 习近平总书记 does not answer who chairs
# the association.
_POSTS = (("主席", re.compile(r"主席|\b(?:president|chair(?:man|woman|person)?)\b", re.I)),
          ("部长", re.compile(r"部长|\bminister\b", re.I)))


def _post_agrees(question: str, sentence: str) -> bool:
    """Does the sentence name someone with the post the question asks about (any, if none)?"""
    post = next((word for word, asks in _POSTS if asks.search(question)), None)
    return post is None or re.search(
        rf"[{_SURNAMES}][\u4e00-\u9fff]{{1,2}}{post}", sentence) is not None


# "会不会设几个奖", "能不能派几个人": whether there will be some, not how many.
_WHETHER_SOME = re.compile(r"(?:会不会|能不能|是不是|要不要|有没有|可不可以)[^,。?]{0,6}?"
                           r"几\s*(?:个|家|项|名|位|所)")


#: A named body in a run of them ("中国科学技术出版社、科普出版社和科技导报社"): a roster.
_NAMED = r"[\u4e00-\u9fff]{2,14}(?:社|中心|研究院|研究所|学会|协会|集团|大学)"

# Order matters: the first type whose `asks` matches wins.
TYPES: tuple[AnswerType, ...] = (
    # A poem, a speech, a song to write: the plan is quoted, never written to order.
    AnswerType("composition",
               re.compile(r"(?:写|作|编|来)(?:一|几)?(?:首|篇|段|副|个)?[\u4e00-\u9fff]{0,12}"
                          r"(?:诗|绝句|律诗|词(?!语|汇|条)|歌(?!颂)|对联|顺口溜|快板|散文|小说|演讲稿|讲话稿|发言稿|"
                          r"作文|祝酒词|段子|笑话)|"
                          r"\b(?:write|compose)\b.{0,40}\b(?:poem|song|haiku|limerick|essay|"
                          r"speech|joke|story|rap|verse)s?\b", re.I),
               re.compile(r"(?!)")),  # nothing in the plan is one
    AnswerType("person",
               re.compile(r"(?:主席|书记|组长|负责人|部长|秘书长|理事长|会长|院长|局长|领导)"
                          r"(?:是谁|是哪位|叫什么)|现任.{0,12}(?:是谁|是哪位)|"
                          r"\bwho (?:is|are) (?:the )?(?:current |present )?(?:chair|president|"
                          r"head|leader|secretary|director)", re.I),
               re.compile(rf"[{_SURNAMES}][\u4e00-\u9fff]{{1,2}}(?:同志|总书记|主席|书记|院士|"
                          r"教授|部长)"),
               agrees=_post_agrees),
    AnswerType("money",
               # (not a bare 资本: the plan's own 社会资本 is asked about without an amount)
               re.compile(r"预算|经费(?:是|有)?多少|多少钱|资金(?:是|有)?多少|金额|工资|薪|"
                          r"多少\w{0,4}(?:经费|资金|资本)|"
                          r"会费|补贴|津贴|奖金|拨款|费用是?多少|"
                          # "what funding model" asks for a model, not an amount
                          r"\b(?:budget|salary|how much (?:money|funding)|fee|allowance|"
                          r"(?:be|get|gets|are|is) paid|earns?)\b",
                          re.I),
               re.compile(rf"{_NUM}\s*(?:元|万元|亿元|亿)")),
    AnswerType("place",
               # "哪些国家战略" names strategies, not countries
               re.compile(r"哪(?:个|些|几个)?(?:城市|省份?|地市|市|国家(?!战略|级|重大|重点|层面))|"
                          r"什么(?:城市|地方)|"
                          # a venue: "年会在哪开", "在哪里举办"
                          r"在哪(?:里|儿)?(?:开|办|举办|召开|举行)|"
                          r"\bwhere (?:is|was|will) .{0,30}\b(?:held|hosted|take place)\b|"
                          r"\b(?:which (?:cities|city|provinces?|countries)|where exactly)\b",
                          re.I),
               re.compile(_PLACES)),
    # An errand: where or how to download, book, pay, take leave. The answer is a site,
    # an address, a counter, which a policy plan never gives ("app在哪下载", "会议室怎么预约").
    AnswerType("errand",
               re.compile(r"在哪(?:里|儿)?(?:下载|预约|报名|办理?|领取?|购买|买|查询?|登记|"
                          r"申请|缴费?|交费)|(?:怎么|如何|咋|去哪)(?:预约|下载|请假|报销|申请|缴费|"
                          r"交费|买票|报名)|网址|网站地址|官网|报名(?:方式|流程|材料|表)|"
                          r"(?:交|提交|准备|需要|带)(?:什么|哪些|啥)(?:材料|证明|手续)|"
                          # a procedure: whom to get approval from, which steps to take
                          r"找(?:哪个部门|哪家|谁)(?:审批|批|报批)|去哪(?:审批|报批)|"
                          r"审批(?:流程|手续)|走(?:啥|什么|哪些)(?:流程|程序|手续)|"
                          r"办(?:啥|什么|哪些)手续|"
                          r"\bwhere (?:can|do|should) (?:i|we) (?:download|book|register|"
                          r"sign up|apply|buy|get|find)\b|"
                          r"\bhow (?:do|can) (?:i|we) (?:book|download|sign up|register|reset|"
                          r"log ?in|renew|install|print|pay)\b|"
                          # on which site to find it; not "做成个什么网站" (what it becomes)
                          r"(?:哪个|什么|啥)\s*(?:app|公众号|小程序|网址|链接)|"
                          r"(?:在|上|去)(?:哪个|什么|啥)\s*网站|"
                          r"\b(?:which|what) (?:app|website|web site|site|url)\b|"
                          r"\b(?:url|web ?site address|web address|application form)\b",
                          re.I),
               re.compile(r"https?://|www\.|网址|电话|地址|窗口|办事大厅")),
    # An age limit: the plan gives one age only (45岁以下 for young delegates).
    AnswerType("age",
               re.compile(r"年龄(?:上限|下限|限制|要求|界限)|多大(?:年纪|岁数|以下|以上)|"
                          r"多少岁|几岁|\b(?:age limit|how old)\b", re.I),
               re.compile(r"\d+\s*岁")),
    AnswerType("frequency",
               # "一年办几期": how many times a year, which the plan leaves open (定期举办)
               re.compile(r"几年一(?:次|回|届|换)|(?:多久|多长时间)一(?:次|回)|每隔|一年几次|"
                          r"几年开一次|开一次|"
                          r"(?:一年|每年|每届|一届)(?:要|会|能)?(?:办|开|举办|召开|搞|组织)?"
                          r"几(?:期|次|回|场)|\bhow often\b|\bhow many times a year\b", re.I),
               re.compile(rf"每\s*{_NUM}?\s*(?:年|届|季|月)|{_NUM}年一(?:次|届)|一年一次")),
    # An exam's subjects, or a named university: details of carrying a clause out,
    # which the plan never gives ("高等学校科协联盟" names no university).
    AnswerType("exam",
               re.compile(r"考(?:哪些|什么|啥|几门)|(?:怎么|如何|咋)考|考试(?:科目|内容|大纲)|"
                          r"笔试|面试|"
                          r"\b(?:exam|written test|interview questions)\b", re.I),
               re.compile(r"考试|科目|笔试|面试")),
    # A penalty or sanction: the plan asks for integrity and openness about misconduct,
    # and lays down no punishment.
    AnswerType("penalty",
               re.compile(r"处分|处罚|惩罚|惩处|惩戒|罚款|罚则|追责|(?:怎么|如何|咋)罚|"
                          r"\b(?:penalt(?:y|ies)|punish\w*|sanctions?|disciplinary)\b", re.I),
               re.compile(r"处分|处罚|惩|罚|追究|问责|撤销|吊销")),
    # A cadre's rank ("什么级别的干部"): the plan says only that one post carries none.
    AnswerType("rank",
               re.compile(r"(?:什么|啥|哪个|哪一)级别|(?:什么|啥|哪一?)级(?:的)?干部|几级干部|"
                          r"级别(?:是|有)?(?:多高|多少|什么|啥)|"
                          r"\b(?:what|which) (?:rank|grade)\b|\bhow senior\b", re.I),
               re.compile(r"级别|职级|[正副]?(?:部|厅|局|处|科)级")),
    # What becomes of the staff of merged or cut units: the plan cuts and merges, and says
    # nothing of resettling anyone.
    AnswerType("resettlement",
               re.compile(r"安置|分流|下岗|裁员|转岗|\b(?:laid off|lay-?offs?|redundanc\w*)\b",
                          re.I),
               re.compile(r"安置|分流|下岗|裁员|转岗")),
    # A roster ("试点学会的名单"): the plan names a few bodies, never its pilots or members.
    AnswerType("roster",
               re.compile(r"名单|\b(?:name list|list of (?:the )?names|roster)\b|"
                          # which societies are in a pilot or its first batch
                          r"(?:第一批|首批|试点|入选)[^,。?]{0,12}哪(?:几|些)家?(?:学会|单位)|"
                          r"(?:第一批|首批|试点|入选)[^,。?]{0,12}(?:学会|单位)是?哪(?:几|些)家|"
                          r"哪(?:几|些)家?(?:学会|单位)[^,。?]{0,4}(?:在试|入选|试点)", re.I),
               re.compile(rf"{_NAMED}(?:、{_NAMED})*(?:、|和|及){_NAMED}")),
    AnswerType("institution",
               re.compile(r"哪(?:所|个|家|几所)(?:大学|高校|学校|院校|研究所|医院)|"
                          r"\bwhich (?:university|universities|college|school)\b", re.I),
               # a named one: 清华大学, not 大学生 or 大学科 (a broad discipline)
               re.compile(r"[\u4e00-\u9fff]{2,6}(?:大学|学院)(?![生科])")),
    AnswerType("date",
               # ("会不会哪天被查", "万一哪天": some day, no date asked)
               re.compile(r"(?<!会不会)(?<!万一)(?<!说不定)(?<!指不定)(?:哪天|哪一天)|几月几[号日]|几月份?|哪(?:一|个)?月|什么日子|哪一?年|"
                          r"何时|什么时候|啥时候|\b(?:which|what) month\b|"
                          r"截止|期限|最晚|多久|多长时间|几年(?:之)?内|几个月(?:之)?内|"
                          # "when" heads a date question; not "…named when they talk about",
                          # nor "When it's all done, what…" (a clause before the question)
                          r"^\W*(?:and |so |but )?when\b(?![^,?]*,\s*(?:what|which|how|who|"
                          r"where|why)\b)|\bwhen (?:is|was|will|should|must|did|"
                          r"does|do|are|can|would)\b|\b(?:what date|by what year|what year|"
                          r"deadline)\b", re.I),
               re.compile(rf"{_NUM}\s*(?:年|月|日|届)|年底|年内|届内|期间|之前|以前|"
                          r"前(?:完成|实现)")),
    AnswerType("ratio",
               re.compile(r"比例|比重|份额|百分之|百分比|占多少|几成|多少%|"
                          r"\b(?:percentage|share|proportion|ratio|what fraction)\b", re.I),
               re.compile(r"%|％|分之|成以上|半数|多数")),
    AnswerType("count",
               # "多少名", "选几名？"; not "哪几个…" (a list) nor "几个学会能不能…" (some),
               # nor "能不能几家合伙" (whether some may join hands).
               re.compile(r"多少\s*(?:名|人|个|家|所|项|位|次|届|条|岁|天|年)|"
                          # "要建几个…", "要配几个编制": a verb may stand between
                          r"(?:有|(?<![就要若还可])是|选|要|设|占|共|一共|总共|(?<!不)能|(?<!不)可)(?:建立?|设立?|成立|"
                          r"组建|办|开|配备?|招|派|聘|留|压缩到|精简到|减到|降到)?几\s*"
                          r"(?:名|人|个|家|所|项|位|次|"
                          r"届|条|岁|天|年)|(?<![哪第])几\s*(?:名|人|个|家|所|项|位|次|届|条|岁|天|年)[?？]?$|"
                          # "在几个省建": how many places
                          r"(?<![哪第])几个(?:省|市|县|城市|国家)|"
                          + HOW_MANY_ITEMS + r"|\b(?:maximum|minimum|exact|total) number of\b",
                          re.I),
               re.compile(rf"{_NUM}\s*(?:名|人|个|家|所|项|位|次|届|岁|天|年)"),
               unless=_WHETHER_SOME, agrees=_unit_agrees),
    # "有多少事业编制": a figure without a unit word.
    AnswerType("figure",
               re.compile(r"多少|(?<!哪)几(?:个|名|项)?$|\bhow (?:many|much)\b", re.I),
               re.compile(rf"\d|{_NUM}\s*(?:分之|个|名|年|岁|成|项|家|人)"),
               unless=_WHETHER_SOME),
    AnswerType("agent",
               # "不知道跟谁说" asks for a channel to be heard, not for a body's name;
               # "宣传谁", "面向谁" for whom something is done, which a body name is not
               re.compile(r"(?<![跟和找向对])(?<!宣传)(?<!表彰)(?<!面向)(?<!服务)(?<!联系)"
                          r"(?<!培养)(?<!支持)(?<!奖励)(?<!推荐)(?<!吸收)(?<!团结)(?<!引导)"
                          r"(?<!帮助)(?<!针对)(?<!比)谁(?!反映|讲)|哪位|哪个部门|哪家|什么机构|哪个机构|"
                          r"哪个单位|\bwho\b", re.I),
               re.compile(r"[\u4e00-\u9fff]{1,12}(?:办公厅|委员会|委|部|院|社|科协|会|党组|"
                          r"中央|政府|书记处|机关|中心|协会|单位|组织)")),
)

# "改革前有多少…", "现任…": the plan looks forward; it states a before/current
# figure only with words such as 目前 or 现有.
# A bare 之前/以前 after a time word is a deadline ("啥时候之前要弄完"), not an anchor.
_ANCHOR_ASKS = re.compile(r"改革(?:之)?前|(?<!时候)(?<!年)(?<!月)(?<!底)(?:之前|以前)|原来|原先|"
                          # "转过去" moves something over; it is no time
                          r"(?<![转调回拿送搬带跑走])过去|现任|目前|现有|当前|"
                          r"\b(?:before the reform|currently|at present)\b", re.I)
# "现在"/"now" asks for today's value only of a figure ("现在有多少人"); with a body or a
# person it means "under the plan" ("现在谁来聘任秘书长", "who gets to hire … now?").
_NOW = re.compile(r"现在|\bnow\b", re.I)
_FIGURES = frozenset({"money", "age", "frequency", "ratio", "count", "figure"})
_ANCHOR_HOLDS = re.compile(r"目前|现有|现行|原有|现任|由[^,。]{0,20}提高|当前")


# "…的比例有什么意义", "为什么要压缩到13个": the question asks why, not for the figure.
_WHY = re.compile(r"为什么|为何|为啥|干嘛要|什么意义|啥意义|意义何在|用意|目的是|出发点|"
                  r"\bwhy\b|\bwhat (?:is|was) the (?:point|purpose)\b", re.I)


# A clause of the question: up to a comma, a colon or an end mark.
_CLAUSE = re.compile(r"[^,，。;；:：?？!！]+")
# A sentence of the question: up to its end mark (or the end of the question).
_SENTENCE = re.compile(r"[^。！!？?；;\n]*(?:[。！!？?；;\n]+|$)")
# Question words, Chinese and English.
_WH = (r"什么|啥|怎么|怎样|咋|如何|多少|哪|谁|是否|有没有|是不是|能不能|会不会|要不要|可不可以|"
       r"\b(?:what|which|who|whom|whose|when|where|why|how)\b")
# What makes a sentence ask rather than tell.
# (几 alone does not: "有几位老领导想留" tells; a sentence that asks with it ends in ？)
_ASKING = re.compile(rf"[?？]|吗|呢|{_WH}|\b(?:is|are|does|do|did|can|will|should)\b", re.I)
# A question word of its own: "农村那块怎么弄" asks by itself, "那常务理事会呢" only points
# back at the question before it (呢, 吗 and the question mark ask nothing of their own).
_OWN_ASK = re.compile(rf"{_WH}|几", re.I)


def asks_by_itself(question: str) -> bool:
    """Does the question hold a question word of its own (not only 呢 / 吗 / ？)?"""
    return bool(_OWN_ASK.search(question))


@lru_cache(maxsize=4096)
def asking_start(question: str) -> int:
    """Where the question's asking begins: after the sentences that only set the scene
    ("我在机关人事处，领导让我先摸个底……份额。我记得现在是五成多一点，要涨到多少？" asks in
    its last sentence; the 份额 of the first is the speaker's story, not what is asked)."""
    start = 0
    for m in _SENTENCE.finditer(question):
        if not m.group():
            break
        if _ASKING.search(m.group()):
            return start
        start = m.end()
    return 0  # no sentence asks: the whole question is what is asked


def asking_part(question: str) -> str:
    """The question from its first asking sentence on (see `asking_start`)."""
    return question[asking_start(question):]


# A clause asking what or how (not how many, not whether): "哪一级岗位", "怎么安排".
# ("叫什么名字" asks for the name of whatever the other clause asks about)
_ASKS_WHAT = re.compile(r"(?<!叫)(?:什么|啥)(?!名)|怎么|怎样|咋|如何|哪些|"
                        r"哪一?(?:级|类|种|方面|块|部分)|"
                        r"\b(?:what|which|how)\b(?! (?:many|much|often|long|old)\b)", re.I)


def _type_of(question: str) -> AnswerType | None:
    for t in TYPES:
        if t.asks.search(question) and not (t.unless and t.unless.search(question)):
            return t
    return None


@lru_cache(maxsize=4096)  # read once per question, not once per candidate sentence
def expected_type(question: str) -> AnswerType | None:
    """The answer type a (Simplified, normalized) question asks for, if any (none for
    a question about why). Read from its asking sentences only (`asking_part`); none
    either when one of its asking clauses asks for no kind of fact ("留给外面人的是哪一级
    岗位，大概能有多少个位置": what the plan says of the posts answers half of it, and a
    figure it does not give is no reason to refuse the whole)."""
    question = asking_part(question)
    if _WHY.search(question):
        return None
    asked = _type_of(question)
    if asked is None:
        return None
    if any(_type_of(c) is None for c in _CLAUSE.findall(question) if _ASKS_WHAT.search(c)):
        return None
    return asked


def asks_for_anchor(question: str, asked: AnswerType | None = None) -> bool:
    """Does the question ask for a value before or outside the plan ("改革前有多少")?
    "现在" anchors a figure only in the clause that asks for it: "现在是五成多一点，要涨到
    多少" asks for the target."""
    question = asking_part(question)
    if _ANCHOR_ASKS.search(question):
        return True
    if asked is None or asked.name not in _FIGURES:
        return False
    return any(_NOW.search(c) and asked.asks.search(c) for c in _CLAUSE.findall(question))


def sentence_answers(question: str, sentence: str) -> bool:
    """Can this sentence answer the question's asked type (and time anchor)?"""
    question = asking_part(question)
    t = expected_type(question)
    if t is None:
        return True
    if not t.holds.search(sentence) or (t.agrees and not t.agrees(question, sentence)):
        return False
    # Only a question after a fact can ask for its earlier value ("改革前有多少").
    return not (asks_for_anchor(question, t) and not _ANCHOR_HOLDS.search(sentence))
