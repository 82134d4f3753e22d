"""Synthetic Chinese medical QA and multiple-choice items, generated from a small knowledge base.

    python -m lib data --profile demo --raw-dir data/raw --out data/processed/demo   (data.source: synthetic)

The knowledge base below gives each disease its department, symptoms, examinations,
treatments, causes and advice. Questions name a disease (or describe its symptoms) and the
answer follows from that disease, so a model that sees more examples learns more of the table
and its test loss falls: the demo can show a scaling curve. Records come in the shibing624/
medical schema (instruction/input/output), with several question and answer templates, patients
of different ages and relations, and about one record in ten made dirty on purpose so that every
cleaning rule has something to drop. The same table feeds `generate_mcq` (the demo's knowledge
track) and `pretraining_pages` (encyclopedia and forum pages, never a question with its answer,
that the demo's tiny base model and its tokenizer are trained on). It is the project's own text;
its numbers say nothing about medicine.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from dataclasses import dataclass
from pathlib import Path

from lib.data import write_if_changed
from lib.io import jsonl_bytes, shown


@dataclass(frozen=True)
class Disease:
    name: str
    department: str
    patients: str  # who gets it in the questions: 成人, 儿童, 女性, 男性, 老人
    symptoms: tuple[str, ...]
    exams: tuple[str, ...]
    treatments: tuple[str, ...]
    causes: tuple[str, ...]
    advice: tuple[str, ...]


# name | department | patients | symptoms | examinations | treatments | causes | advice
_TABLE = """
高血压|心血管内科|成人|头痛、头晕、耳鸣、心悸、颈部发紧、视物模糊|动态血压监测、心电图、肾功能检查、眼底检查|氨氯地平、缬沙坦、氢氯噻嗪、低盐饮食|遗传因素、高盐饮食、肥胖、长期精神紧张|每天食盐不超过5克、每天定时测量血压、戒烟限酒、坚持有氧运动
冠心病|心血管内科|老人|胸闷、胸痛、活动后气短、心悸、左肩放射痛|心电图、冠状动脉CT、心脏彩超、冠状动脉造影|阿司匹林、阿托伐他汀、硝酸甘油、冠脉支架植入|动脉粥样硬化、高血脂、吸烟、糖尿病|避免剧烈运动和情绪激动、随身携带硝酸甘油、低脂饮食、戒烟
心房颤动|心血管内科|老人|心悸、心跳不规则、乏力、头晕、活动耐力下降|心电图、动态心电图、心脏彩超、甲状腺功能|美托洛尔、胺碘酮、华法林、射频消融|高血压、冠心病、甲亢、长期饮酒|规律服用抗凝药、定期复查凝血功能、限制饮酒和咖啡
心力衰竭|心血管内科|老人|呼吸困难、夜间不能平卧、双下肢水肿、乏力、尿量减少|心脏彩超、BNP检测、胸部X线、心电图|呋塞米、螺内酯、沙库巴曲缬沙坦、美托洛尔|冠心病、高血压、心肌病、心脏瓣膜病|限制钠盐和饮水量、每天称体重、避免感冒和劳累
肺炎|呼吸内科|成人|发热、咳嗽、咳黄痰、胸痛、气促|胸部CT、血常规、C反应蛋白、痰培养|阿莫西林、头孢呋辛、阿奇霉素、退热补液|肺炎链球菌等细菌感染、受凉、免疫力下降|多休息多饮水、按疗程使用抗生素、戒烟
支气管哮喘|呼吸内科|成人|反复喘息、呼气性呼吸困难、胸闷、夜间咳嗽、哮鸣音|肺功能检查、支气管激发试验、过敏原检测、呼出气一氧化氮测定|布地奈德吸入剂、沙丁胺醇气雾剂、孟鲁司特|过敏体质、尘螨和花粉、冷空气刺激、呼吸道感染|避开过敏原、随身携带急救气雾剂、规律使用吸入激素
慢性阻塞性肺疾病|呼吸内科|老人|慢性咳嗽、长期咳痰、活动后气短、桶状胸、反复喘息|肺功能检查、胸部CT、动脉血气分析|噻托溴铵、沙美特罗替卡松、家庭氧疗、肺康复训练|长期吸烟、粉尘接触、空气污染|坚决戒烟、接种流感和肺炎疫苗、坚持呼吸功能锻炼
急性支气管炎|呼吸内科|成人|咳嗽、咳白痰、低热、咽痛、胸骨后不适|血常规、胸部X线、肺部听诊|右美沙芬、氨溴索、多饮水休息|病毒感染、受凉、吸入刺激性气体|注意保暖、多喝温水、避免吸烟和油烟
流行性感冒|呼吸内科|成人|高热、全身肌肉酸痛、头痛、乏力、干咳|流感病毒抗原检测、血常规|奥司他韦、对乙酰氨基酚、卧床休息|流感病毒感染、飞沫传播|每年接种流感疫苗、人多时戴口罩、勤洗手
肺结核|结核病科|成人|长期低热、夜间盗汗、咳嗽超过两周、咯血、消瘦|痰涂片抗酸染色、胸部CT、结核菌素试验、γ干扰素释放试验|异烟肼、利福平、吡嗪酰胺、乙胺丁醇|结核分枝杆菌感染、免疫力低下|坚持全程规律服药、咳嗽时遮掩口鼻、定期复查肝功能
慢性胃炎|消化内科|成人|上腹隐痛、饭后饱胀、嗳气、食欲减退、恶心|胃镜、幽门螺杆菌检测、胃黏膜活检|奥美拉唑、铝碳酸镁、多潘立酮|幽门螺杆菌感染、饮食不规律、长期饮酒、长期服用止痛药|规律进餐、少吃辛辣刺激食物、戒酒
消化性溃疡|消化内科|成人|周期性上腹痛、反酸、烧心、黑便、空腹时疼痛|胃镜、碳13呼气试验、大便潜血|奥美拉唑、阿莫西林、克拉霉素、枸橼酸铋钾|幽门螺杆菌感染、长期服用阿司匹林、吸烟|按疗程根除幽门螺杆菌、避免空腹服用止痛药
胃食管反流病|消化内科|成人|烧心、反酸、胸骨后灼痛、夜间呛咳、咽部异物感|胃镜、24小时食管pH监测、食管测压|雷贝拉唑、奥美拉唑、莫沙必利|下食管括约肌松弛、肥胖、饱食后立即平卧|睡前3小时不进食、抬高床头、减轻体重
肠易激综合征|消化内科|成人|反复腹痛、腹泻与便秘交替、腹胀、排便后腹痛缓解|结肠镜、大便常规、血常规|匹维溴铵、双歧杆菌、蒙脱石散|肠道敏感、精神压力大、饮食不当|记录饮食日记、减少产气食物、调节情绪
急性胃肠炎|消化内科|成人|呕吐、腹泻、阵发性腹痛、发热、口干|大便常规、血常规、电解质检查|口服补液盐、蒙脱石散、益生菌|进食不洁食物、病毒或细菌感染|注意饮食卫生、及时补充水分、清淡饮食
脂肪肝|消化内科|成人|右上腹不适、容易疲劳、食欲减退、肝区胀痛|肝脏B超、肝功能、血脂检测、肝脏弹性检测|控制体重、多烯磷脂酰胆碱、水飞蓟宾|肥胖、长期饮酒、高脂饮食、缺乏运动|减轻体重、戒酒、少吃油炸食品、坚持运动
慢性乙型肝炎|感染科|成人|乏力、食欲差、肝区不适、皮肤发黄、尿色加深|乙肝五项、HBV-DNA定量、肝功能、肝脏B超|恩替卡韦、替诺福韦、干扰素|乙肝病毒感染、母婴传播、血液传播|不擅自停药、每半年复查、戒酒、家人接种乙肝疫苗
胆囊结石|肝胆外科|成人|右上腹痛、吃油腻食物后疼痛、恶心、疼痛向右肩背放射|腹部B超、腹部CT、肝功能|腹腔镜胆囊切除术、熊去氧胆酸、解痉止痛|高胆固醇饮食、肥胖、长期不吃早餐|按时吃早餐、少吃油腻食物、控制体重
急性阑尾炎|普外科|成人|转移性右下腹痛、发热、恶心呕吐、右下腹压痛|血常规、腹部B超、腹部CT|阑尾切除术、头孢类抗生素|阑尾腔梗阻、细菌感染|腹痛时不要自行服止痛药、禁食并尽早手术评估
痔疮|肛肠科|成人|便血、肛门肿物脱出、肛门瘙痒、排便疼痛|肛门指检、肛门镜、结肠镜|痔疮膏、地奥司明、温水坐浴、痔切除术|久坐、便秘、饮酒和吃辣|多吃膳食纤维、避免久坐久蹲、养成定时排便习惯
2型糖尿病|内分泌科|成人|口渴多饮、多尿、多食、体重下降、乏力、视物模糊|空腹血糖、糖化血红蛋白、口服葡萄糖耐量试验|二甲双胍、阿卡波糖、胰岛素、饮食控制|胰岛素抵抗、肥胖、遗传、缺乏运动|控制主食量、每天监测血糖、坚持运动、定期检查眼底和足部
甲状腺功能亢进症|内分泌科|女性|心慌、怕热多汗、手抖、体重下降、容易激动、眼球突出|甲状腺功能、甲状腺B超、TRAb抗体|甲巯咪唑、丙硫氧嘧啶、放射性碘治疗|自身免疫、精神刺激、遗传|少吃海带紫菜等高碘食物、定期复查血常规和肝功能
甲状腺功能减退症|内分泌科|女性|怕冷、乏力、嗜睡、体重增加、便秘、皮肤干燥|甲状腺功能、甲状腺抗体、甲状腺B超|左甲状腺素钠|桥本甲状腺炎、甲状腺手术后、碘缺乏|早晨空腹服药、按时复查甲功调整剂量
骨质疏松症|内分泌科|老人|腰背疼痛、身高变矮、驼背、轻微外伤后骨折|骨密度检查、血钙血磷、骨代谢指标|钙剂、维生素D、阿仑膦酸钠|绝经后雌激素减少、年龄增长、缺乏运动、钙摄入不足|多晒太阳、多吃奶制品、预防跌倒
痛风|风湿免疫科|男性|夜间突发关节剧痛、大脚趾关节红肿、关节发热、耳廓出现白色结节|血尿酸、关节B超、双能CT|秋水仙碱、非布司他、别嘌醇、苯溴马隆|高嘌呤饮食、饮酒、肥胖、尿酸排泄减少|少吃海鲜和动物内脏、戒啤酒、每天饮水2000毫升以上
类风湿关节炎|风湿免疫科|女性|晨僵超过1小时、双手小关节对称性肿痛、关节畸形、低热乏力|类风湿因子、抗CCP抗体、血沉、双手X线|甲氨蝶呤、来氟米特、羟氯喹、生物制剂|自身免疫、遗传、感染|坚持规律用药、进行关节功能锻炼、注意关节保暖
腰椎间盘突出症|骨科|成人|腰痛、一侧下肢放射痛、腿麻、弯腰困难|腰椎MRI、腰椎CT、直腿抬高试验|卧床休息、布洛芬、甲钴胺、理疗、椎间盘摘除手术|长期久坐、弯腰搬重物、腰椎退变|避免久坐和弯腰提重物、睡硬板床、加强腰背肌锻炼
颈椎病|骨科|成人|颈肩酸痛、手臂麻木、头晕、颈部活动受限|颈椎X线、颈椎MRI|颈托固定、理疗、塞来昔布、颈椎牵引|长期低头、姿势不良、颈椎退变|减少低头看手机、调整枕头高度、做颈部保健操
膝骨关节炎|骨科|老人|膝关节疼痛、上下楼梯时疼痛加重、关节弹响、关节肿胀|膝关节X线、膝关节MRI|氨基葡萄糖、双氯芬酸凝胶、玻璃酸钠关节腔注射、人工关节置换|年龄增长、肥胖、关节劳损|减轻体重、避免爬山和深蹲、多做游泳等不负重运动
偏头痛|神经内科|女性|单侧搏动性头痛、恶心、畏光、怕吵、头痛前眼前闪光|头颅MRI、神经系统检查|布洛芬、佐米曲普坦、氟桂利嗪|遗传、睡眠不足、精神紧张、月经周期|规律作息、记录头痛日记、避免诱发头痛的食物
脑梗死|神经内科|老人|一侧肢体无力、口角歪斜、言语不清、突发眩晕、走路不稳|头颅CT、头颅MRI、颈动脉超声、血脂检测|静脉溶栓、阿司匹林、氯吡格雷、阿托伐他汀、康复训练|动脉粥样硬化、高血压、糖尿病、心房颤动|出现口角歪斜和肢体无力立即拨打120、控制血压和血糖
帕金森病|神经内科|老人|静止性震颤、动作迟缓、肌肉僵硬、走路小碎步、表情呆板|头颅MRI、嗅觉检测、多巴胺转运体显像|多巴丝肼、普拉克索、司来吉兰、康复锻炼|黑质多巴胺能神经元变性、遗传、环境因素|按时服药、家中防止跌倒、坚持锻炼
失眠症|精神心理科|成人|入睡困难、早醒、睡眠浅多梦、白天疲乏、注意力不集中|多导睡眠监测、焦虑抑郁量表|失眠认知行为治疗、右佐匹克隆、褪黑素|精神压力、作息不规律、睡前长时间使用手机|固定起床时间、睡前不喝咖啡浓茶、卧室里不玩手机
抑郁症|精神心理科|成人|情绪低落、兴趣减退、失眠早醒、食欲下降、自责自罪|汉密尔顿抑郁量表、心理评估、甲状腺功能|舍曲林、艾司西酞普兰、心理治疗|遗传、长期压力、重大生活事件|按医嘱足疗程服药、家人多陪伴、有轻生念头立即就医
焦虑症|精神心理科|成人|过度担心、坐立不安、心慌、出汗、肌肉紧张|焦虑自评量表、心电图、甲状腺功能|帕罗西汀、丁螺环酮、放松训练、心理治疗|性格因素、长期压力、遗传|规律运动、学习放松技巧、减少咖啡因摄入
缺铁性贫血|血液科|女性|乏力、面色苍白、头晕、活动后心慌、指甲变脆|血常规、血清铁蛋白、大便潜血|硫酸亚铁、多糖铁复合物、维生素C|月经量过多、慢性失血、铁摄入不足|多吃红肉和动物肝脏、查找出血原因并治疗
尿路感染|泌尿外科|女性|尿频、尿急、尿痛、下腹坠胀、尿液浑浊|尿常规、尿培养、泌尿系B超|左氧氟沙星、呋喃妥因、磷霉素氨丁三醇|大肠杆菌感染、憋尿、饮水少|多喝水勤排尿、不要憋尿、注意会阴部清洁
肾结石|泌尿外科|成人|腰部绞痛、血尿、恶心呕吐、疼痛向会阴部放射|泌尿系B超、泌尿系CT、尿常规|坦索罗辛、体外冲击波碎石、输尿管镜取石|饮水少、高草酸饮食、代谢异常|每天饮水2500毫升以上、少吃菠菜和浓茶
前列腺增生|泌尿外科|男性|夜尿增多、排尿费力、尿线变细、尿不尽|前列腺B超、尿流率检查、PSA|坦索罗辛、非那雄胺、经尿道前列腺电切术|年龄增长、雄激素作用|少饮酒、避免久坐、睡前少喝水
慢性肾小球肾炎|肾内科|成人|泡沫尿、眼睑水肿、血尿、血压升高、腰酸乏力|尿常规、24小时尿蛋白定量、肾功能、肾穿刺活检|贝那普利、缬沙坦、糖皮质激素、优质低蛋白饮食|免疫介导、感染后|低盐优质低蛋白饮食、控制血压、避免肾毒性药物
湿疹|皮肤科|成人|皮肤瘙痒、红斑、丘疹、渗液、皮肤增厚粗糙|皮肤科查体、过敏原检测、血清IgE|丁酸氢化可的松乳膏、氯雷他定、保湿霜|过敏体质、皮肤屏障受损、环境刺激|洗澡水温不宜过高、坚持使用保湿霜、避免搔抓
荨麻疹|皮肤科|成人|风团、剧烈瘙痒、皮疹此起彼伏、皮疹24小时内消退|过敏原检测、血常规、皮肤划痕试验|西替利嗪、依巴斯汀、氯雷他定|食物或药物过敏、感染、冷热刺激|避开可疑过敏原、不要搔抓、出现喉头发紧立即就医
痤疮|皮肤科|成人|粉刺、红色丘疹、脓疱、囊肿结节、面部出油|皮肤科查体、性激素检查|阿达帕林凝胶、过氧苯甲酰、多西环素、异维A酸|皮脂分泌旺盛、毛囊角化、痤疮丙酸杆菌|不要挤痘、温和洁面、少吃甜食和奶制品
带状疱疹|皮肤科|老人|单侧带状分布的簇集水疱、皮肤刺痛、灼热感、低热|皮肤科查体、疱液病毒检测|阿昔洛韦、伐昔洛韦、加巴喷丁、甲钴胺|水痘-带状疱疹病毒再激活、免疫力下降|保持疱疹部位清洁、不要抓破水疱、50岁以上可接种疫苗
过敏性鼻炎|耳鼻咽喉科|成人|阵发性喷嚏、清水样鼻涕、鼻痒、鼻塞|过敏原检测、鼻内镜、鼻分泌物涂片|糠酸莫米松鼻喷剂、氯雷他定、生理盐水洗鼻|过敏体质、尘螨和花粉、宠物皮屑|花粉季节戴口罩、勤洗床单被罩、坚持洗鼻
慢性鼻窦炎|耳鼻咽喉科|成人|鼻塞、流脓涕、头面部胀痛、嗅觉减退|鼻窦CT、鼻内镜|鼻用激素、桉柠蒎肠溶胶囊、鼻腔冲洗、鼻内镜手术|急性鼻炎反复发作、鼻腔结构异常|坚持鼻腔冲洗、预防感冒
急性扁桃体炎|耳鼻咽喉科|儿童|咽痛、吞咽痛、高热、扁桃体红肿、扁桃体表面脓点|血常规、咽拭子培养|青霉素、阿莫西林、布洛芬|溶血性链球菌感染、受凉、劳累|多喝水、吃流质食物、按疗程用药
中耳炎|耳鼻咽喉科|儿童|耳痛、耳闷、听力下降、耳道流脓、发热|耳镜检查、纯音测听、声导抗|阿莫西林、氧氟沙星滴耳液、鼓膜穿刺|感冒后细菌感染、擤鼻方法不当|正确擤鼻、洗澡时防止耳朵进水
白内障|眼科|老人|视力逐渐下降、视物模糊、眩光、看东西发黄|视力检查、裂隙灯检查、眼部B超|白内障超声乳化加人工晶体植入术|年龄增长、紫外线照射、糖尿病|户外戴太阳镜、控制血糖、视力明显下降时手术
青光眼|眼科|老人|眼胀痛、同侧头痛、视野缩小、看灯光有彩虹圈、视力下降|眼压测量、视野检查、眼底OCT、房角镜检查|拉坦前列素滴眼液、噻吗洛尔滴眼液、激光或抗青光眼手术|眼压升高、房角狭窄、遗传|避免在暗处久留、不要一次大量饮水、定期测眼压
结膜炎|眼科|成人|眼红、眼痒、眼部分泌物增多、异物感、流泪|裂隙灯检查、结膜分泌物涂片|左氧氟沙星滴眼液、妥布霉素滴眼液、奥洛他定滴眼液|细菌或病毒感染、过敏|勤洗手、不用手揉眼、毛巾单独使用
干眼症|眼科|成人|眼干、眼涩、眼部异物感、视疲劳、畏光|泪液分泌试验、泪膜破裂时间|玻璃酸钠滴眼液、眼部热敷、睑板腺按摩|长时间看屏幕、睑板腺功能障碍、佩戴隐形眼镜|每看屏幕20分钟远眺20秒、有意识地多眨眼
龋齿|口腔科|儿童|牙齿遇冷热酸甜敏感、牙齿有黑洞、咀嚼时疼痛|口腔检查、牙片|补牙、根管治疗|口腔细菌、吃糖多、刷牙不认真|早晚刷牙、使用牙线、少吃甜食
牙周炎|口腔科|成人|牙龈出血、牙龈红肿、口臭、牙齿松动|口腔检查、牙周探诊、全景片|洁牙、龈下刮治、甲硝唑|牙菌斑和牙石、吸烟、糖尿病|每年洁牙、正确刷牙、戒烟
口腔溃疡|口腔科|成人|口腔黏膜圆形溃疡、灼痛、进食时疼痛加重|口腔检查、血常规、微量元素检测|西地碘含片、康复新液、维生素B2|熬夜、精神紧张、维生素缺乏、口腔黏膜损伤|规律作息、多吃蔬菜水果、避免辛辣食物
多囊卵巢综合征|妇科|女性|月经稀发、闭经、多毛、脸上长痘、肥胖|性激素六项、妇科B超、口服葡萄糖耐量试验|炔雌醇环丙孕酮、二甲双胍、减重|内分泌紊乱、胰岛素抵抗、遗传|减轻体重、规律运动、控制饮食
子宫肌瘤|妇科|女性|月经量增多、经期延长、下腹包块、尿频、贫血|妇科B超、盆腔MRI、血常规|定期观察、米非司酮、肌瘤剔除术、子宫切除术|雌激素水平偏高、遗传|每半年复查B超、不乱吃含雌激素的保健品
阴道炎|妇科|女性|白带增多、外阴瘙痒、白带有异味、外阴灼热|白带常规、阴道分泌物检查|甲硝唑、克霉唑栓、硝呋太尔|细菌或真菌感染、菌群失调、滥用抗生素|保持外阴清洁干燥、穿棉质内裤、避免过度冲洗
乳腺增生|乳腺外科|女性|乳房胀痛、乳房结节、月经前疼痛加重|乳腺B超、乳腺钼靶|逍遥丸、乳癖消、调节情绪|内分泌失调、精神压力大|保持心情舒畅、每年做乳腺检查
手足口病|儿科|儿童|发热、手足皮疹、口腔疱疹、流口水、拒食|血常规、咽拭子肠道病毒检测|对症退热、口腔护理、居家隔离|肠道病毒感染、密切接触传播|勤洗手、隔离两周、出现嗜睡或抽搐立即就医
轮状病毒肠炎|儿科|儿童|蛋花汤样水便、呕吐、发热、口渴、尿少|大便常规、轮状病毒抗原检测、电解质检查|口服补液盐、蒙脱石散、补锌|轮状病毒感染|继续母乳喂养、及时补液、留意脱水表现
热性惊厥|儿科|儿童|发热时突然抽搐、意识丧失、双眼上翻、口吐白沫|脑电图、血常规、电解质检查|退热、侧卧防窒息、地西泮|发热、遗传、神经系统发育未成熟|抽搐时让孩子侧卧不要往嘴里塞东西、发热时及时退热
小儿支气管肺炎|儿科|儿童|发热、咳嗽、气促、精神差、吃奶减少|胸部X线、血常规、C反应蛋白|阿莫西林克拉维酸钾、阿奇霉素、雾化吸入|细菌或病毒感染、免疫力低|保持室内通风、少去人多的地方、按时接种疫苗
"""


def _parse(row: str) -> Disease:
    name, department, patients, *lists = row.split("|")
    return Disease(name, department, patients, *(tuple(item.split("、")) for item in lists))


DISEASES = tuple(_parse(row) for row in _TABLE.strip().splitlines())
DEPARTMENTS = tuple(sorted({d.department for d in DISEASES}))

# --- who asks ----------------------------------------------------------------------------------

# (who, ages) by the patients a disease has; "我" asks about oneself, the others for a relative.
_ASKERS = {
    "成人": (("我", (18, 60)), ("我老公", (25, 60)), ("我老婆", (25, 60)), ("我哥", (20, 55)), ("我朋友", (20, 50))),
    "老人": (("我爸", (55, 85)), ("我妈", (55, 85)), ("我爷爷", (65, 90)), ("我奶奶", (65, 90)), ("我", (55, 75))),
    "儿童": (("我家孩子", (1, 12)), ("我儿子", (2, 12)), ("我女儿", (2, 12)), ("宝宝", (1, 6))),
    "女性": (("我", (18, 55)), ("我老婆", (25, 55)), ("我妈", (45, 70)), ("我女儿", (15, 30))),
    "男性": (("我", (30, 75)), ("我老公", (30, 65)), ("我爸", (50, 80))),
}
_DURATIONS = ("这两天", "三天前开始", "最近一周", "近半个月", "一个多月来", "这半年", "反复两三年", "今天早上起")
_OPENINGS = ("", "", "", "", "医生你好，", "请问", "您好，", "大夫，", "医生，")
_CLOSINGS = ("", "", "", "", "谢谢！", "急！", "麻烦帮忙看看。", "在线等。")

# --- questions and answers ---------------------------------------------------------------------

# Each kind of question has its templates; {d} is the disease, {who} a patient, {s1}..{s3}
# symptoms, {age} and {dur} the patient's age and how long it has lasted.
_QUESTIONS = {
    "symptoms": ("{d}有哪些症状？", "{d}的典型表现是什么？", "{d}早期会有什么症状？", "怎么判断自己是不是得了{d}？",
                 "得了{d}身体会有哪些不舒服？", "{who}被查出{d}，这个病一般会有什么表现？"),
    "department": ("{d}应该挂什么科？", "得了{d}去医院看哪个科？", "怀疑自己是{d}，挂哪个科室比较合适？",
                   "{who}可能是{d}，应该去什么科就诊？"),
    "exams": ("{d}需要做哪些检查？", "怎么确诊{d}？要查什么？", "医生怀疑{who}是{d}，一般要做什么检查？",
              "诊断{d}主要靠哪些检查？"),
    "treatment": ("{d}怎么治疗？", "{d}吃什么药效果好？", "{who}确诊了{d}，该怎么治？",
                  "{d}能治好吗？有哪些治疗方法？"),
    "causes": ("{d}是什么原因引起的？", "为什么会得{d}？", "{d}的病因有哪些？", "{who}今年{age}岁，怎么会得{d}呢？"),
    "advice": ("{d}患者平时要注意什么？", "得了{d}饮食和生活上有什么要注意的？", "怎样预防{d}？",
               "{who}有{d}，日常护理要注意哪些？"),
    "overview": ("请介绍一下{d}。", "{d}是一种什么病？", "想全面了解一下{d}，能详细讲讲吗？"),
    "diagnose": ("{who}{age}岁，{dur}{s1}、{s2}，还有{s3}，请问是什么病？",
                 "{who}{dur}出现{s1}和{s2}，这是怎么回事？需要挂什么科？",
                 "{who}今年{age}岁，{dur}总是{s1}，有时{s2}，会是什么问题？",
                 "{s1}、{s2}、{s3}是什么病的表现？",
                 "{who}{age}岁，{dur}{s1}，伴有{s2}，要紧吗？该怎么办？"),
}
# How often each kind is asked: symptom descriptions are what patients ask most.
_KIND_WEIGHTS = {"symptoms": 2, "department": 1, "exams": 1, "treatment": 2, "causes": 1, "advice": 1,
                 "overview": 1, "diagnose": 4}
_INSTRUCTIONS = ("请回答下面的医学问题。", "你是一名经验丰富的医生，请回答患者的提问。", "根据患者的描述给出诊疗建议。")


def _listing(items: tuple[str, ...], rng: random.Random, least: int = 2) -> str:
    """The first few items (at least `least`), joined the Chinese way: a、b和c."""
    chosen = items[:rng.randint(min(least, len(items)), len(items))]
    return chosen[0] if len(chosen) == 1 else "、".join(chosen[:-1]) + "和" + chosen[-1]


def _answer(kind: str, d: Disease, rng: random.Random, shown_symptoms: tuple[str, ...] = ()) -> str:
    """An answer that follows from the disease: its facts in one of a few phrasings."""
    symptoms, exams, treatments = _listing(d.symptoms, rng, 3), _listing(d.exams, rng), _listing(d.treatments, rng)
    causes, advice = _listing(d.causes, rng), _listing(d.advice, rng)
    # every answer says where to go, as a doctor answering online does
    see = rng.choice((f"建议到{d.department}就诊。", f"出现这些情况应及时到{d.department}就诊。"))
    closing = rng.choice(("", "", "如症状加重或出现新的不适，请及时就医。", "具体方案请在医生指导下制定。"))
    if kind == "symptoms":
        body = rng.choice((f"{d.name}的常见症状有{symptoms}。", f"{d.name}主要表现为{symptoms}等。"))
        extra = rng.choice((f"确诊需要做{exams}等检查。",
                            f"部分患者早期症状不明显，体检时通过{d.exams[0]}才发现。", ""))
        return body + extra + see + closing
    if kind == "department":
        return rng.choice((f"{d.name}一般到{d.department}就诊。", f"建议挂{d.department}。")) + \
            rng.choice((f"医生通常会安排{exams}等检查来明确诊断。", "")) + closing
    if kind == "exams":
        return rng.choice((f"确诊{d.name}常用的检查有{exams}。",
                           f"{d.name}的诊断要结合症状和检查，常做的检查包括{exams}。")) + \
            f"检查前可以先到{d.department}挂号，由医生开具检查单。" + closing
    if kind == "treatment":
        return rng.choice((f"{d.name}的治疗方法包括{treatments}。", f"{d.name}常用的治疗有{treatments}。")) + \
            f"具体用药请在{d.department}医生指导下进行，不要自行增减剂量。" + \
            rng.choice((f"同时要注意{advice}。", ""))
    if kind == "causes":
        return rng.choice((f"{d.name}常见的原因有{causes}。", f"引起{d.name}的因素主要包括{causes}。")) + \
            rng.choice((f"预防上要注意{advice}。", "")) + see + closing
    if kind == "advice":
        steps = d.advice[:rng.randint(2, len(d.advice))]
        if rng.random() < 0.5:
            steps = (*steps, f"定期到{d.department}复查")
            return f"{d.name}患者要注意以下几点：\n" + "\n".join(f"{i}. {s}。" for i, s in enumerate(steps, 1))
        return f"{d.name}患者平时要注意{advice}。" + see + closing
    if kind == "overview":
        return (f"{d.name}是{d.department}的常见疾病。常见原因有{causes}。典型症状包括{symptoms}。诊断主要依靠{exams}。"
                f"治疗上可以选择{treatments}。日常生活中应{advice}。") + closing
    # diagnose: the symptoms the patient named point to the disease
    named = "、".join(shown_symptoms[:2])
    return (f"根据你描述的{named}等表现，考虑{d.name}的可能性比较大。"
            f"建议到{d.department}就诊，做{exams}等检查明确诊断。"
            + rng.choice((f"确诊后可在医生指导下选择{treatments}等治疗。", ""))
            + rng.choice((f"平时要注意{advice}。", "")) + closing)


def _question(kind: str, d: Disease, rng: random.Random) -> tuple[str, tuple[str, ...]]:
    """A question about the disease, and the symptoms it names (for diagnose questions)."""
    who, (youngest, oldest) = rng.choice(_ASKERS[d.patients])
    symptoms = tuple(rng.sample(d.symptoms, 3))
    text = rng.choice(_QUESTIONS[kind]).format(
        d=d.name, who=who, age=rng.randint(youngest, oldest), dur=rng.choice(_DURATIONS),
        s1=symptoms[0], s2=symptoms[1], s3=symptoms[2],
    )
    return rng.choice(_OPENINGS) + text + rng.choice(_CLOSINGS), symptoms


def clean_record(rng: random.Random) -> dict:
    """One clean record in the hub schema; one in six puts the question in `input`."""
    d = rng.choice(DISEASES)
    kind = rng.choices(list(_KIND_WEIGHTS), weights=list(_KIND_WEIGHTS.values()))[0]
    question, symptoms = _question(kind, d, rng)
    answer = _answer(kind, d, rng, symptoms)
    if rng.random() < 1 / 6:
        return {"instruction": rng.choice(_INSTRUCTIONS), "input": question, "output": answer}
    return {"instruction": question, "input": "", "output": answer}


# --- dirty records: one kind for each cleaning rule --------------------------------------------

_FULL_WIDTH = {code: code + 0xFEE0 for code in range(ord("0"), ord("z") + 1) if chr(code).isalnum()}


def _noisy(record: dict, rng: random.Random) -> dict:
    """Whitespace and full-width noise that normalisation removes."""
    def noise(text: str) -> str:
        choice = rng.randrange(4)
        if choice == 0:
            return f"  {text.replace('，', '， ', 2)}\t"
        if choice == 1:
            return "\u3000" + text.translate(_FULL_WIDTH)
        if choice == 2:
            return text.replace("，", "，\u3000", 1) + "\u200b"
        return text.replace("。", "。\n\n", 1) + "   "
    return {**record, "instruction": noise(record["instruction"]), "output": noise(record["output"])}


_ENGLISH = (
    ("I am {age} years old and have had a cough for {n} days. What should I do?",
     "Drink plenty of water, rest, and see a doctor if the cough lasts more than {n} weeks."),
    ("What are the usual symptoms of high blood pressure at age {age}?",
     "Most people have no symptoms; measure your blood pressure regularly, at least every {n} months."),
    ("My child ({age}) has a fever of 38.{n} degrees. Is it serious?",
     "Keep the child hydrated and check the temperature every {n} hours; see a doctor if it rises."),
)
_SITES = ("jiankang", "yiliao", "99yisheng", "haoyiyuan", "kangfu")
_NON_ANSWERS = ("建议到医院就诊。", "你好，请咨询医生。", "您好，建议及时到正规医院检查一下。",
                "建议去医院看看吧，谢谢。", "你好，建议你到当地正规医院就诊，在医生指导下治疗。",
                "这位朋友你好，你的提问过于简单，无法给你满意的答复。")


def _advertised(record: dict, rng: random.Random) -> dict:
    mobile = "1" + str(rng.randint(3, 9)) + "".join(str(rng.randrange(10)) for _ in range(9))
    ad = rng.choice((
        f"详情请访问www.{rng.choice(_SITES)}.com。", f"咨询电话：{mobile}。",
        f"加微信{rng.choice(_SITES)}{rng.randint(10, 99)}免费咨询。", f"有问题可以加QQ：{rng.randint(10**5, 10**9)}。",
        "点击在线咨询我院专家，为您量身定制治疗方案。",
    ))
    return {**record, "output": record["output"] + ad}


def _near_duplicate(record: dict, rng: random.Random) -> dict:
    """The same question with a word or two added: 3-gram Jaccard >= (n-2)/n for n characters."""
    question = record["instruction"] if not record["input"] else record["input"]
    edited = rng.choice(("请问" + question, question.rstrip("？?。！") + "呢？", question + "谢谢",
                         "你好，" + question))
    field = "instruction" if not record["input"] else "input"
    return {**record, field: edited}


def _dirty(kind: str, rng: random.Random, earlier: list[dict]) -> dict:
    """A record that the cleaning rule `kind` drops (or, for normalise, changes)."""
    record = clean_record(rng)
    in_answer = rng.random() < 0.7  # most problems sit in the answer, some in the question
    if kind == "normalise":
        return _noisy(record, rng)
    if kind == "empty":
        return {**record, "output": rng.choice(("", "   ", "\u3000"))} if in_answer else {**record, "instruction": " "}
    if kind == "too_short":
        if in_answer:
            return {**record, "output": rng.choice(("是的。", "可以。", "多喝水。", "不要紧。"))}
        return {"instruction": rng.choice(("头痛？", "发烧", "咳嗽？")), "input": "", "output": record["output"]}
    if kind == "too_long":
        story = "".join(_answer("overview", d, rng) for d in rng.sample(DISEASES, 20))  # > 2,600 characters
        return {**record, "output": story} if in_answer else {**record, "instruction": story[:600] + "这是怎么回事？"}
    if kind == "not_chinese":
        question, answer = rng.choice(_ENGLISH)
        n = rng.randint(2, 9)
        return {"instruction": question.format(age=rng.randint(18, 80), n=n), "input": "", "output": answer.format(n=n)}
    if kind == "advertising":
        return _advertised(record, rng)
    if kind == "non_answer":
        return {**record, "output": rng.choice(_NON_ANSWERS)}
    if kind == "duplicate":
        # Every other one also holds its question in its answer field (pages that copy the
        # question into the answer), for the repeats_question rule: that rule drops it before the
        # duplicate rule would, so the records kept are the same either way.
        copy = dict(rng.choice(earlier))
        return copy if len(earlier) % 2 else {**copy, "output": copy["instruction"]}
    # near_duplicate: a long question, so that two added characters keep the 3-gram Jaccard
    # above 14/16 = 0.875
    long_ones = [r for r in earlier[-500:] if len(r["input"] or r["instruction"]) >= 18]
    return _near_duplicate(rng.choice(long_ones or earlier), rng)


# One record in ten is dirty: 3% only noisy (kept after normalisation), 1% for each other rule.
DIRTY_SHARES = {"normalise": 0.03, "empty": 0.01, "too_short": 0.01, "too_long": 0.01, "not_chinese": 0.01,
                "advertising": 0.01, "non_answer": 0.01, "duplicate": 0.01, "near_duplicate": 0.01}


def generate(n: int, seed: int) -> list[dict]:
    """`n` raw records (instruction/input/output), the same for the same seed."""
    rng = random.Random(seed)
    limits = list(zip(itertools.accumulate(DIRTY_SHARES.values()), DIRTY_SHARES, strict=True))
    records, clean = [], []
    for _ in range(n):
        roll = rng.random()
        kind = next((k for limit, k in limits if roll < limit), "clean")
        if kind == "clean" or (kind in ("duplicate", "near_duplicate") and not clean):
            record = clean_record(rng)
            clean.append(record)
        else:
            record = _dirty(kind, rng, clean)
        records.append(record)
    return records


def write_raw(raw_dir: str | Path, n: int, seed: int) -> tuple[Path, dict]:
    """Generate `n` records into raw_dir/synthetic/ as JSON Lines (rewritten only if different)."""
    path = Path(raw_dir) / "synthetic" / f"synthetic-{n}-s{seed}.jsonl"
    content = jsonl_bytes(generate(n, seed))
    write_if_changed(path, content)
    manifest = {"type": "synthetic", "generator": __name__, "path": shown(path), "count": n, "seed": seed,
                "sha256": hashlib.sha256(content).hexdigest()}
    return path, manifest


# --- multiple choice ---------------------------------------------------------------------------

LETTERS = "ABCD"


def _mcq_item(kind: str, d: Disease, rng: random.Random) -> tuple[str, str, list[str]] | None:
    """(question, correct option, three wrong options) of one kind, or None if it cannot be made."""
    others = [o for o in DISEASES if o.department != d.department]
    if kind == "department":
        wrong = rng.sample([dep for dep in DEPARTMENTS if dep != d.department], 3)
        return f"{d.name}首选的就诊科室是？", d.department, wrong
    if kind == "symptom":
        pool = sorted({s for o in others for s in o.symptoms} - set(d.symptoms))
        return f"以下哪项是{d.name}的典型症状？", rng.choice(d.symptoms), rng.sample(pool, 3)
    if kind == "examination":
        pool = sorted({e for o in others for e in o.exams} - set(d.exams))
        return f"诊断{d.name}常用的检查是？", rng.choice(d.exams), rng.sample(pool, 3)
    if kind == "treatment":
        pool = sorted({t for o in others for t in o.treatments} - set(d.treatments))
        return f"以下哪项可用于治疗{d.name}？", rng.choice(d.treatments), rng.sample(pool, 3)
    # diagnosis: three of its symptoms; the wrong diseases have none of them
    shown_symptoms = rng.sample(d.symptoms, 3)
    pool = [o.name for o in others if not set(shown_symptoms) & set(o.symptoms)]
    if len(pool) < 3:
        return None
    return f"患者出现{'、'.join(shown_symptoms)}，最可能的诊断是？", d.name, rng.sample(pool, 3)


MCQ_KINDS = ("department", "symptom", "examination", "treatment", "diagnosis")


def generate_mcq(n: int, seed: int) -> list[dict]:
    """`n` distinct four-option items; each letter is the answer of n/4 of them (±1)."""
    rng = random.Random(seed)
    answers = [LETTERS[i % 4] for i in range(n)]
    rng.shuffle(answers)
    items, seen = [], set()
    attempts = 0
    while len(items) < n:
        attempts += 1
        if attempts > 50 * n + 1000:
            raise ValueError(f"cannot make {n} distinct multiple-choice items from the knowledge base")
        kind, d = rng.choice(MCQ_KINDS), rng.choice(DISEASES)
        made = _mcq_item(kind, d, rng)
        if made is None:
            continue
        question, correct, wrong = made
        key = (question, correct, frozenset(wrong))
        if key in seen:
            continue
        seen.add(key)
        items.append(four_option_item(f"syn-mcq-{len(items)}", f"synthetic-{kind}", question, correct, wrong,
                                      answers[len(items)]))
    return items


def four_option_item(item_id: str, source: str, question: str, correct: str, wrong: list[str], letter: str) -> dict:
    """An item whose option `letter` is the correct one and whose other letters hold `wrong` in order."""
    options = wrong[:]
    options.insert(LETTERS.index(letter), correct)
    return {"id": item_id, "source": source, "question": question,
            "options": dict(zip(LETTERS, options, strict=True)), "answer": letter}


# --- pretraining text of the demo's base model: pages, never a question with its answer -----------

_GROUPS = {"成人": "成年人", "老人": "老年人", "儿童": "儿童", "女性": "女性", "男性": "男性"}
# One or two statements of each fact of a disease, as a health encyclopedia writes them.
_STATEMENTS = (
    ("{d}是{dep}的常见疾病，多见于{group}。", "{d}多见于{group}，属于{dep}的诊治范围。"),
    ("{d}的典型表现包括{symptoms}。", "{d}患者常出现{symptoms}。", "{d}可表现为{symptoms}等。"),
    ("{s}同时出现时，医生会考虑{d}的可能性。", "以{s}为主要表现的疾病中，{d}比较常见。"),
    ("{d}的诊断依靠{exams}。", "临床上常用{exams}等检查来明确诊断{d}。"),
    ("{d}的治疗手段有{treatments}。", "治疗{d}常选择{treatments}。"),
    ("{d}的发生与{causes}有关。", "{causes}是{d}的常见原因。"),
    ("{d}患者在生活中应{advice}。", "对于{d}，日常注意事项包括{advice}。"),
    ("出现{s}等情况时，建议及时到{dep}就诊。", "{d}的治疗方案需在医生指导下制定，如症状加重应及时就医。"),
)


def encyclopedia_page(d: Disease, rng: random.Random) -> str:
    """A paragraph about a disease: its facts in shuffled order and varied wording."""
    facts = {"d": d.name, "dep": d.department, "group": _GROUPS[d.patients],
             "symptoms": _listing(d.symptoms, rng, 3), "s": "、".join(rng.sample(d.symptoms, 3)),
             "exams": _listing(d.exams, rng), "treatments": _listing(d.treatments, rng),
             "causes": _listing(d.causes, rng), "advice": _listing(d.advice, rng)}
    first, *rest = _STATEMENTS
    rest = rng.sample(rest, rng.randint(4, len(rest)))
    return "".join(rng.choice(templates).format(**facts) for templates in (first, *rest))


def questions_page(d: Disease, rng: random.Random) -> str:
    """What patients ask about a disease, as a forum's list of threads: questions only, no answers."""
    kinds = rng.sample(list(_QUESTIONS), 4)
    return "\n".join(_question(kind, d, rng)[0] for kind in kinds)


def pretraining_pages(n_pages: int, seed: int) -> list[tuple[str, str]]:
    """`n_pages` (title, text) pages, each disease in turn: three encyclopedia pages for each page
    of patients' questions. The same for the same seed."""
    rng = random.Random(seed)
    pages = []
    for i, d in enumerate(itertools.islice(itertools.cycle(DISEASES), n_pages)):
        if (i // len(DISEASES)) % 4 == 3:
            pages.append((f"{d.name}：网友提问", questions_page(d, rng)))
        else:
            pages.append((d.name, encyclopedia_page(d, rng)))
    return pages
